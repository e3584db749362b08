"""Work that only spare CPU should do: embedding answered misses into the semantic index.

At the shipped safe point a miss costs the request path no embedding at all, but its question
still has to be embedded (about 5 ms of CPU on a small host) to be stored and to find a grey-zone
candidate for the hub's judge. This thread takes those jobs from a bounded queue, one at a time,
and hands each to the embedder it is given: in the agent, ``edge_agent.cache.spare``'s child
process at the lowest CPU priority, so this thread only waits on a pipe. An edge that passes more
unique misses than it has spare CPU for fills the queue; further jobs are dropped and counted
(``dropped``), never waited for, so a busy edge serves at full speed and indexes what it can.
``max_per_s`` paces the thread as well: spare CPU is not free (see ``edge_agent.cache.headroom``),
so it takes at most that many jobs a second, and the queue absorbs a burst above it.

Embeddings go in batches (``run_batched``): the thread takes what is queued, waits up to
``linger_s`` for more (at most ``batch``), hands them to the embedder in one call and settles every
caller in one hop to the loop, so the callers wake together and their writes can share one
transaction. The embedder still runs each text alone (see ``edge_agent.cache.embedding``).

What follows an embedding (the search for a grey candidate, the write) is the caller's, on its loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
ItemT = TypeVar("ItemT")


@dataclass(frozen=True)
class _Job(Generic[T]):
    work: Callable[[], T]
    future: asyncio.Future[T | None]
    loop: asyncio.AbstractEventLoop


@dataclass(frozen=True)
class _Item(Generic[ItemT, T]):
    """One item of a batch: ``batch`` maps a list of items to one result (or ``None``) each."""

    batch: Callable[[list[ItemT]], Sequence[T | None]]
    item: ItemT
    future: asyncio.Future[T | None]
    loop: asyncio.AbstractEventLoop


_Queued = _Job[Any] | _Item[Any, Any]


class Indexer:
    def __init__(
        self, *, capacity: int = 256, batch: int = 32, linger_s: float = 0.05, max_per_s: float | None = None
    ) -> None:
        self.capacity = capacity
        self.batch = batch
        self.linger_s = linger_s
        self.max_per_s = max_per_s  # jobs a second at most (``_pace``); None: as fast as they come
        self._stop = threading.Event()
        self._jobs: queue.Queue[_Queued | None] = queue.Queue(maxsize=capacity)
        self._carry: _Queued | None = None  # taken while filling a batch, but not of that batch
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
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T | None] = loop.create_future()
        return await self._submit(_Job(work, future, loop), future)

    async def run_batched(self, batch: Callable[[list[ItemT]], Sequence[T | None]], item: ItemT) -> T | None:
        """``item``'s result from one call of ``batch`` over it and whatever else is queued for the
        same ``batch``; ``None`` when dropped, failed, or ``batch`` had none for it. Never raises."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T | None] = loop.create_future()
        return await self._submit(_Item(batch, item, future, loop), future)

    async def _submit(self, job: _Queued, future: asyncio.Future[T | None]) -> T | None:
        if self._closed:
            self.dropped += 1
            return None
        if not self._started:
            self._started = True
            self._thread.start()
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            self.dropped += 1
            return None
        return await future

    def _next(self, timeout: float | None = None) -> _Queued | None:
        if self._carry is not None:
            job, self._carry = self._carry, None
            return job
        return self._jobs.get(timeout=timeout) if timeout is not None else self._jobs.get()

    def _run(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            if isinstance(job, _Item):
                if not self._run_batch(job):
                    return
                continue
            result: object = None
            started = time.monotonic()
            try:
                result = job.work()
                self.done += 1
            except Exception:
                self.failed += 1
                log.exception("background cache indexing failed")
            _resolve(job, result)
            self._pace(1, started)

    def _run_batch(self, first: _Item[Any, Any]) -> bool:
        """Fill a batch behind ``first`` (same ``batch`` callable), run it, settle it; False when
        the stop marker came while filling (the batch still runs: its callers are waiting)."""
        items, running = [first], True
        started = time.monotonic()
        deadline = started + self.linger_s
        while len(items) < self.batch and not self._closed:
            try:
                more = self._next(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if isinstance(more, _Item) and more.batch == first.batch:
                items.append(more)
                continue
            if more is None:
                running = False
            else:
                self._carry = more
            break
        results: Sequence[object] = [None] * len(items)
        try:
            results = first.batch([i.item for i in items])
            if len(results) != len(items):
                raise ValueError(f"a batch of {len(items)} gave {len(results)} results")
            self.done += sum(r is not None for r in results)
            self.failed += sum(r is None for r in results)
        except Exception:
            results = [None] * len(items)
            self.failed += len(items)
            log.exception("background cache indexing failed")
        _resolve_all(items, results)
        self._pace(len(items), started)
        return running

    def _pace(self, jobs: int, started: float) -> None:
        """Hold the thread until ``jobs`` fit ``max_per_s`` since ``started``: meanwhile further
        jobs wait in the queue, and once it is full they are dropped (``close`` cuts it short)."""
        if self.max_per_s is not None:
            self._stop.wait(jobs / self.max_per_s - (time.monotonic() - started))

    def close(self) -> None:
        """Stop after the job in hand; jobs still queued are dropped (their callers get ``None``)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
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


def _resolve(job: _Queued, result: object) -> None:
    _resolve_all([job], [result])


def _resolve_all(jobs: Sequence[_Queued], results: Sequence[object]) -> None:
    """One hop to each loop for all of ``jobs``: their callers wake in the same loop turn."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], object]]] = {}
    for job, result in zip(jobs, results, strict=True):
        by_loop.setdefault(job.loop, []).append((job.future, result))
    for loop, settled in by_loop.items():

        def settle(settled: list[tuple[asyncio.Future[Any], object]] = settled) -> None:
            for future, result in settled:
                if not future.done():
                    future.set_result(result)

        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is waiting
            loop.call_soon_threadsafe(settle)
