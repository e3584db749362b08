"""Grey-zone candidates on their way to the hub's judge, off the request path.

A candidate the edge's verifier neither serves nor clearly rejects is never served; once the
request it came from has its answer, the candidate (both questions and the cached answer) is
offered here. One task sends them over the hub link one at a time and records each verdict in
the cache file (``aliases.mark``): a rejected pair is never sent again, an approved one arrives
back as an alias through the global-cache feed. The queue is bounded; a candidate that finds it
full, or the hub away, is dropped and counted, and may be offered again by a later request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from edge_agent.cache import aliases
from edge_agent.cache.db import Database
from edge_agent.hub_link.errors import HubLinkError
from shared.wire import CacheJudgeRequest, CacheJudgeVerdict

log = logging.getLogger(__name__)


class JudgeClient(Protocol):
    """What ``HubLink`` provides for judging."""

    @property
    def connected(self) -> bool: ...

    async def judge(self, req: CacheJudgeRequest, timeout: float) -> CacheJudgeVerdict: ...


@dataclass(frozen=True)
class GreyCandidate:
    pair: str  # ``aliases.pair_id``: what the verdict is remembered under
    request: CacheJudgeRequest


class GreyQueue:
    def __init__(
        self, db: Database, hub: JudgeClient, *, capacity: int = 256, timeout_s: float = 60.0
    ) -> None:
        self.db = db
        self.hub = hub
        self.timeout_s = timeout_s
        self._queue: asyncio.Queue[GreyCandidate] = asyncio.Queue(maxsize=capacity)
        self._worker: asyncio.Task[None] | None = None
        self._in_hand = 0
        self._ids = itertools.count()
        self._prefix = uuid.uuid4().hex[:8]
        self.sent = 0
        self.approved = 0
        self.rejected = 0
        self.dropped = 0  # queue full or hub away: not sent
        self.failed = 0  # sent, but no verdict came back
        self.known = 0  # judged (or being judged) already: not sent again

    def next_id(self) -> str:
        return f"grey-{self._prefix}-{next(self._ids)}"

    def offer(self, cand: GreyCandidate) -> bool:
        """Queue ``cand`` unless its pair was judged or is queued already; never waits."""
        if not self.hub.connected:
            self.dropped += 1
            return False
        now = time.time()
        with self.db.tx() as conn:
            if not aliases.should_send(conn, cand.pair, now):
                self.known += 1
                return False
            if self._queue.full():
                self.dropped += 1
                return False
            aliases.mark(conn, cand.pair, "sent", now)
        self._queue.put_nowait(cand)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="cache-grey-judge")
        return True

    async def _work(self) -> None:
        while True:
            cand = await self._queue.get()
            self._in_hand += 1
            try:
                await self._judge(cand)
            finally:
                self._in_hand -= 1
                self._queue.task_done()

    async def _judge(self, cand: GreyCandidate) -> None:
        try:
            verdict = await self.hub.judge(cand.request, self.timeout_s)
        except HubLinkError as exc:
            self.failed += 1
            log.info("grey candidate not judged (%s); it may be offered again", exc)
            with self.db.tx() as conn:
                aliases.forget_sent(conn, cand.pair)
            return
        self.sent += 1
        state = "approved" if verdict.approved else "rejected"
        if verdict.approved:
            self.approved += 1
        else:
            self.rejected += 1
        with self.db.tx() as conn:
            aliases.mark(conn, cand.pair, state, time.time())

    @property
    def pending(self) -> int:
        return self._queue.qsize() + self._in_hand

    async def drain(self) -> None:
        """Wait until every queued candidate has its verdict (or failed)."""
        if self.pending:
            await self._queue.join()

    def stats(self) -> dict[str, int]:
        return {
            "sent": self.sent, "approved": self.approved, "rejected": self.rejected,
            "dropped": self.dropped, "failed": self.failed, "known": self.known, "pending": self.pending,
        }  # fmt: skip

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
