"""The semantic index's writes on the event loop, one transaction for each loop turn's worth.

The indexer settles a whole batch of embeddings in one hop to the loop, so the bookkeeping tasks
waiting on them wake in the same turn. Each hands its entry here; the first schedules a flush
behind the others (``call_soon``), which runs every grey search of the turn and then one write
transaction for all of them: one commit, and the pages it writes, shared by the batch instead of
paid by each answer. A write that fails is retried entry by entry, so one bad row costs only
itself.

Within one batch the searches all run before the write, so two questions that arrive in the
same batch do not see each other as grey candidates; the next batch sees both.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from edge_agent.cache.base import Lookup, Vectors
from edge_agent.cache.keys import CacheRequest
from edge_agent.cache.service import CacheService

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    key: CacheRequest
    text: str
    model: str
    vector: Vectors
    search: bool
    done: asyncio.Future[Lookup | None]


class IndexWrites:
    def __init__(self, service: CacheService) -> None:
        self.service = service
        self._pending: list[_Pending] = []
        self._scheduled = False
        self.batches = 0
        self.written = 0

    async def put(
        self, key: CacheRequest, text: str, model: str, vector: Vectors, *, search: bool
    ) -> Lookup | None:
        """Store ``key``'s entry with the others of this loop turn; with ``search``, first look
        for its grey candidate (``SemanticCache.get`` without serving) and return that lookup."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Lookup | None] = loop.create_future()
        self._pending.append(_Pending(key, text, model, vector, search, done))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await done

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        sem = self.service.semantic
        if sem is None or not batch:
            for p in batch:
                _settle(p, None)
            return
        found: list[Lookup | None] = []
        for p in batch:
            looked = None
            if p.search:
                try:
                    looked = sem.get(p.key, p.vector, serve=False)
                except Exception:
                    log.exception("grey-candidate search failed")
            found.append(looked)
        rows = [(p.key, p.text, p.model, p.vector) for p in batch]
        try:
            sem.put_many(rows)
        except Exception:
            log.warning("semantic batch store failed; storing its entries one by one", exc_info=True)
            for row in rows:
                try:
                    sem.put_many([row])
                except Exception:
                    self.service.store_failures += 1
                    log.exception("semantic cache store failed")
        self.batches += 1
        self.written += len(batch)
        for p, looked in zip(batch, found, strict=True):
            _settle(p, looked)


def _settle(p: _Pending, looked: Lookup | None) -> None:
    if not p.done.done():  # its task was cancelled meanwhile
        p.done.set_result(looked)
