"""Work that only spare CPU should do: embedding answered misses into the semantic index.

At the shipped safe point a miss costs the request path no embedding at all, but its question
still has to be embedded (about 5 ms of CPU on a small host) to be stored and to find a grey-zone
candidate for the hub's judge. That work runs here: one thread, a bounded queue, and on Linux the
thread's own scheduling priority lowered to the minimum (``os.setpriority`` on its thread id), so
the embedder only ever gets CPU that serving leaves idle. An edge that passes more unique misses
than it has spare CPU for fills the queue; further jobs are dropped and counted (``dropped``), never
waited for, so a busy edge serves at full speed and indexes what it can.

The embedding runs in ONNX Runtime with the interpreter lock released; the small Python steps
around it are what keep the thread from holding that lock for long while descheduled.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

LOWEST_PRIORITY = 19


@dataclass(frozen=True)
class _Job:
    work: Callable[[], Any]
    then: Callable[[Any], None] | None
    loop: asyncio.AbstractEventLoop | None


class Indexer:
    def __init__(self, *, capacity: int = 256, nice: int = LOWEST_PRIORITY, name: str = "cache-index") -> None:
        self.capacity = capacity
        self.nice = nice
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=capacity)
        self._idle = threading.Condition()
        self._busy = 0  # jobs taken and not yet finished
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False
        self._closed = False
        self.done = 0
        self.dropped = 0
        self.failed = 0

    def submit(self, work: Callable[[], Any], then: Callable[[Any], None] | None = None) -> bool:
        """Queue ``work`` for the thread; ``then(result)`` runs afterwards on the caller's event loop
        (when submitted from one). False (and counted) when the queue is full or closed."""
        if self._closed:
            self.dropped += 1
            return False
        if not self._started:
            self._started = True
            self._thread.start()
        try:
            loop = asyncio.get_running_loop() if then is not None else None
        except RuntimeError:
            loop = None
        with self._idle:
            self._busy += 1
        try:
            self._jobs.put_nowait(_Job(work, then, loop))
        except queue.Full:
            with self._idle:
                self._busy -= 1
            self.dropped += 1
            return False
        return True

    @property
    def pending(self) -> int:
        with self._idle:
            return self._busy

    def _run(self) -> None:
        self._lower_priority()
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                result = job.work()
            except Exception:
                self.failed += 1
                log.exception("background cache indexing failed")
                self._finished()
                continue
            if job.then is None:
                self._finished()
            elif job.loop is None:
                self._then(job.then, result)
            else:
                try:
                    job.loop.call_soon_threadsafe(self._then, job.then, result)
                except RuntimeError:  # the loop closed while this job ran
                    self._finished()

    def _then(self, then: Callable[[Any], None], result: Any) -> None:
        try:
            then(result)
        except Exception:
            self.failed += 1
            log.exception("background cache indexing failed")
        finally:
            self._finished()

    def _finished(self) -> None:
        with self._idle:
            self._busy -= 1
            self.done += 1
            self._idle.notify_all()

    def _lower_priority(self) -> None:
        try:  # Linux: a thread id names the thread alone, so only this one is deprioritised
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
        except (AttributeError, OSError) as exc:
            log.debug("cache indexer keeps normal priority: %s", exc)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted job has finished (its ``then`` included)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    async def drain(self) -> None:
        """Wait, without blocking the loop, until every submitted job has finished."""
        while self.pending:
            await asyncio.sleep(0.005)

    def close(self) -> None:
        """Stop after the job in hand; queued jobs are dropped. Idempotent."""
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
                with self._idle:
                    self._busy -= 1
        self._jobs.put(None)
        self._thread.join(timeout=10)
