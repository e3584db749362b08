"""What follows an answer once it is released: the telemetry sink, then the cache stores.

Each answer's bookkeeping runs in its own background task, so the client never waits for a cache
write, nor for the lock that the semantic lookups share with the stores. The tasks are tracked, so
none is lost: ``drain`` waits for every pending one, and ``aclose`` (the app's
shutdown, before the cache and the spool close) drains them and has any later answer booked inline.
A failure is logged and goes no further: the answer it belongs to already exists. An answer with
nothing to store (a cache hit) needs only the sink, which only queues its event: it runs as a loop
callback after the answer, not as a task, which cost a cache hit more than the sink itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

from edge_agent.request import AnswerCache, CacheLookup, DrainingSink, Outcome, OutcomeSink

log = logging.getLogger(__name__)


class Bookkeeping:
    """``background`` off books each answer before it is released (the benchmark's baseline)."""

    def __init__(
        self, caches: Sequence[AnswerCache], sink: OutcomeSink | None, *, background: bool = True
    ) -> None:
        self.caches = caches
        self.sink = sink
        self.background = background
        self._tasks: set[asyncio.Task[None]] = set()
        self._sinks_pending = 0  # sink calls queued on the loop (answers with nothing to store)
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._tasks) + self._sinks_pending

    async def book(self, outcome: Outcome, looked: Mapping[int, CacheLookup]) -> None:
        """Book ``outcome``; ``looked`` holds, by cache index, what each cache's lookup returned."""
        if not self._stores(outcome):
            # telemetry alone (a cache hit, a bypass): a callback after the answer, not a task
            if self._closed or not self.background:
                self._sink(outcome)
            elif self.sink is not None:
                self._sinks_pending += 1
                asyncio.get_running_loop().call_soon(self._sink_soon, outcome)
            return
        work = self._work(outcome, looked)
        if self._closed or not self.background:
            await work
        else:
            self._spawn(work, outcome.request.ctx.request_id)

    async def drain(self) -> None:
        """Wait until the bookkeeping of every answer booked so far has finished."""
        while self._tasks or self._sinks_pending:
            if not self._tasks:
                await asyncio.sleep(0)  # the queued sink callbacks run before this returns
                continue
            # ``wait``, not ``gather``: a caller that is cancelled must not cancel the bookkeeping
            await asyncio.wait(set(self._tasks))
        if isinstance(self.sink, DrainingSink):
            await self.sink.drain()

    async def aclose(self) -> None:
        """Drain; anything booked after this runs inline. Idempotent."""
        self._closed = True
        await self.drain()

    def _stores(self, outcome: Outcome) -> bool:
        """Whether ``outcome`` goes into the caches: not what came out of one, nor a bypass."""
        return bool(self.caches) and not outcome.answer.route.is_cache and not outcome.request.cache_bypass

    def _sink_soon(self, outcome: Outcome) -> None:
        self._sinks_pending -= 1
        self._sink(outcome)

    def _sink(self, outcome: Outcome) -> None:
        if self.sink is not None:
            try:
                self.sink(outcome)
            except Exception:
                log.exception("telemetry sink failed")

    def _spawn(self, work: Coroutine[Any, Any, None], request_id: str) -> None:
        task = asyncio.create_task(work, name=f"bookkeeping of {request_id}")
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("bookkeeping of an answer failed", exc_info=exc)

    async def _work(self, outcome: Outcome, looked: Mapping[int, CacheLookup]) -> None:
        # The sink runs before this task's first await, and tasks start in the order they were
        # created: telemetry sees answers in the order they went out, before the next request.
        self._sink(outcome)
        if not self._stores(outcome):
            return
        req, answer = outcome.request, outcome.answer
        for i, cache in enumerate(self.caches):
            try:
                await cache.store(req, answer, looked.get(i))
            except Exception:  # a cache must never fail an answer that already exists
                log.exception("cache store failed")
