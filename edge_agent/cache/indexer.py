"""Work that only spare CPU should do: embedding answered misses into the semantic index.

At the shipped safe point a miss costs the request path no embedding at all, but its question
still has to be embedded (about 5 ms of CPU on a small host) to be stored and to find a grey-zone
candidate for the hub's judge. This thread takes those jobs from a bounded queue, one at a time,
and hands each to the embedder it is given: in the agent, ``edge_agent.cache.spare``'s child
process at the lowest CPU priority, so this thread only waits on a pipe. An edge that passes more
unique misses than it has spare CPU for fills the queue; further jobs are dropped and counted
(``dropped``), never waited for, so a busy edge serves at full speed and indexes what it can.

What follows an embedding (the search for a grey candidate, the write) is the caller's, on its loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class _Job(Generic[T]):
    work: Callable[[], T]
    future: asyncio.Future[T | None]
    loop: asyncio.AbstractEventLoop


class Indexer:
    def __init__(self, *, capacity: int = 256) -> None:
        self.capacity = capacity
        self._jobs: queue.Queue[_Job[object] | None] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name="cache-index", daemon=True)
        self._started = False
        self._closed = False
        self.done = 0
        self.dropped = 0  # queue full (or closed): never run
        self.failed = 0

    @property
    def pending(self) -> int:
        return self._jobs.qsize()

    async def run(self, work: Callable[[], T]) -> T | None:
        """``work()``'s result, computed on the low-priority thread; ``None`` when it was dropped
        (queue full, indexer closed) or failed (logged). Never raises."""
        if self._closed:
            self.dropped += 1
            return None
        if not self._started:
            self._started = True
            self._thread.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T | None] = loop.create_future()
        try:
            self._jobs.put_nowait(_Job(work, future, loop))  # type: ignore[arg-type]
        except queue.Full:
            self.dropped += 1
            return None
        return await future

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            result: object = None
            try:
                result = job.work()
                self.done += 1
            except Exception:
                self.failed += 1
                log.exception("background cache indexing failed")
            _resolve(job, result)

    def close(self) -> None:
        """Stop after the job in hand; jobs still queued are dropped (their callers get ``None``)."""
        if self._closed:
            return
        self._closed = True
        if not self._started:
            return
        while True:
            try:
                left = self._jobs.get_nowait()
            except queue.Empty:
                break
            if left is not None:
                self.dropped += 1
                _resolve(left, None)
        self._jobs.put(None)
        self._thread.join(timeout=10)


def _resolve(job: _Job[object], result: object) -> None:
    def settle() -> None:
        if not job.future.done():
            job.future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is waiting
        job.loop.call_soon_threadsafe(settle)
