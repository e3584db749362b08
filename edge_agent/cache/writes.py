"""The caches' writes on the event loop, many answers to one transaction.

Bookkeeping tasks each hand their answer's write here, and a batch of them is written in one
transaction: one commit, and the pages it writes, shared by the batch instead of paid by each
answer. A write that fails is retried entry by entry, so one bad row costs only itself.

``ExactWrites`` lets a batch of exact entries build up for ``linger_s`` (10 ms; at most
``max_batch`` rows), then stores it in a loop callback. One answer per commit cost about 100 us
of CPU a row here, four to a commit half that, and sixteen a quarter: the commit (WAL pages of
the table, three indexes and the counters) is most of a store. A lookup of a key whose entry is
still waiting writes the batch first (``flush_for``), so a repeat that arrives after its answer
went out still finds the entry; other readers (another process on the file, the statistics) see
it within the linger. A crash loses at most the entries of one linger: cached answers, which the
next miss stores again. ``close`` writes what is waiting, and every later store goes out at once.

``IndexWrites`` stores semantic entries of one loop turn (answers released together under load;
a batch of embeddings the indexer settles in one hop), first running each one's grey-candidate
search, in a task that yields the loop after each search (one search costs a few tenths of a
millisecond; a batch of them in one callback held up the requests that arrived meanwhile). Within
one batch the searches all run before the write, so two questions of the same batch do not see
each other as grey candidates; the next batch sees both.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from edge_agent.cache.base import Lookup, Vectors
from edge_agent.cache.keys import CacheRequest
from edge_agent.cache.service import CacheService

log = logging.getLogger(__name__)


LINGER_S = 0.01
MAX_BATCH = 64  # about 2 ms of the loop in one callback


class ExactWrites:
    def __init__(
        self, service: CacheService, *, linger_s: float = LINGER_S, max_batch: int = MAX_BATCH
    ) -> None:
        self.service = service
        self.linger_s = linger_s
        self.max_batch = max_batch
        self._pending: list[tuple[tuple[CacheRequest, str, str], asyncio.Future[bool]]] = []
        self._keys: set[str] = set()  # the exact keys of the pending rows
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._closed = False
        self.batches = 0
        self.written = 0

    async def put(self, key: CacheRequest, text: str, model: str) -> bool:
        """Store ``key``'s answer with the others of this linger; False when it was not stored
        (caches off, an empty answer, a failed write: logged and counted)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        self._pending.append(((key, text, model), done))
        self._keys.add(self.service.exact.key(key))
        if self._closed or self.linger_s <= 0 or len(self._pending) >= self.max_batch:
            self._reschedule(loop.call_soon(self._flush))
        elif self._timer is None:
            self._timer = loop.call_later(self.linger_s, self._flush)
        return await done

    def flush_for(self, key: CacheRequest) -> None:
        """Write the waiting batch now if it holds ``key``'s entry: its lookup must see it."""
        if self._keys and self.service.exact.key(key) in self._keys:
            self._flush()

    def close(self) -> None:
        """Write what is waiting; later stores are written in the next loop turn. Idempotent."""
        self._closed = True
        self._flush()

    def _reschedule(self, handle: asyncio.TimerHandle | asyncio.Handle) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = handle

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        self._keys.clear()
        if not batch:
            return
        stored = self.service.store_exact_many([row for row, _ in batch])  # logs its own failures
        self.batches += 1
        self.written += len(batch)
        for (_, done), ok in zip(batch, stored, strict=True):
            if not done.done():  # its task was cancelled meanwhile
                done.set_result(ok)


@dataclass(frozen=True)
class _Semantic:
    key: CacheRequest
    text: str
    model: str
    vector: Vectors
    search: bool


class IndexWrites:
    """Semantic entries, in batches, by a task that gives the loop back between the searches: a
    batch of grey searches in one callback held a request that arrived meanwhile for all of them."""

    def __init__(self, service: CacheService) -> None:
        self.service = service
        self._pending: list[tuple[_Semantic, asyncio.Future[Lookup | None]]] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.written = 0

    async def put(
        self, key: CacheRequest, text: str, model: str, vector: Vectors, *, search: bool
    ) -> Lookup | None:
        """Store ``key``'s entry with the others of this loop turn; with ``search``, first look
        for its grey candidate (``SemanticCache.get`` without serving) and return that lookup."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Lookup | None] = loop.create_future()
        self._pending.append((_Semantic(key, text, model, vector, search), done))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._write(), name="semantic index writes")
        return await done

    async def _write(self) -> None:
        while self._pending:  # the task starts after the callers of this turn have queued
            batch, self._pending = self._pending, []
            found: list[Lookup | None] = []
            try:
                for item, _ in batch:
                    found.append(self._search(item))
                    await asyncio.sleep(0)  # a request that arrived meanwhile goes first
                self._store([item for item, _ in batch])
            finally:  # cancelled at shutdown: nobody waits for ever
                found += [None] * (len(batch) - len(found))
                for (_, done), looked in zip(batch, found, strict=True):
                    if not done.done():
                        done.set_result(looked)
            self.batches += 1
            self.written += len(batch)

    def _search(self, item: _Semantic) -> Lookup | None:
        sem = self.service.semantic
        if sem is None or not item.search:
            return None
        try:
            return sem.get(item.key, item.vector, serve=False)
        except Exception:
            log.exception("grey-candidate search failed")
            return None

    def _store(self, items: list[_Semantic]) -> None:
        sem = self.service.semantic
        if sem is None:
            return
        rows = [(p.key, p.text, p.model, p.vector) for p in items]
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
