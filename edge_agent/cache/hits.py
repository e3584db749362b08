"""Hit bookkeeping of the caches, kept in memory and written in batches.

A hit changes two things about the row it served: how often it was served (a sampled pool serves
its least-served answer next) and when it was last used (eviction is least recently used). Writing
both on every hit was a write transaction per hit on the event loop, the most expensive part of an
exact hit. ``HitLog`` holds them instead; the cache folds them into its reads (so a pool still
rotates from one hit to the next) and writes them in one statement per batch: before a store (so
eviction sees every touch), when enough have gathered or the oldest has waited long enough, and
on close. A crash loses at most one batch of counts: ordering hints, never an answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge_agent.cache.db import Connection, Database

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PendingHit:
    row: int
    served: int  # hits not yet written
    last_used: float  # the latest of them


class HitLog:
    def __init__(self, *, max_pending: int = 512, max_age_s: float = 1.0) -> None:
        self.max_pending = max_pending
        self.max_age_s = max_age_s
        # the exact stage records on the event loop, the semantic stage also in worker threads
        self._lock = threading.Lock()
        self._served: dict[int, int] = {}
        self._used: dict[int, float] = {}
        self._since: float | None = None  # monotonic time of the oldest unwritten hit

    def __len__(self) -> int:
        return len(self._served)

    def record(self, row: int, now: float) -> None:
        with self._lock:
            self._served[row] = self._served.get(row, 0) + 1
            self._used[row] = max(self._used.get(row, now), now)
            if self._since is None:
                self._since = time.monotonic()

    def served(self, row: int) -> int:
        """Hits of ``row`` not written yet."""
        return self._served.get(row, 0)

    def last_used(self, row: int, written: float) -> float:
        """When ``row`` was last used, counting unwritten hits; ``written``: the stored time."""
        return max(written, self._used.get(row, written))

    @property
    def due(self) -> bool:
        since = self._since
        if since is None:
            return False
        return len(self._served) >= self.max_pending or time.monotonic() - since >= self.max_age_s

    def take(self) -> list[PendingHit]:
        """Everything unwritten, cleared here: the caller writes it."""
        with self._lock:
            out = [PendingHit(row, n, self._used[row]) for row, n in self._served.items()]
            self._served, self._used, self._since = {}, {}, None
        return out

    def restore(self, hits: list[PendingHit]) -> None:
        """Put back what a failed write took, so no count is lost to a busy or full disk."""
        with self._lock:
            for hit in hits:
                self._served[hit.row] = self._served.get(hit.row, 0) + hit.served
                self._used[hit.row] = max(self._used.get(hit.row, hit.last_used), hit.last_used)
            if hits and self._since is None:
                self._since = time.monotonic()


def write_log(
    conn: Connection, hits: HitLog, sql: str, args: Callable[[PendingHit], tuple[object, ...]]
) -> int:
    """Write ``hits`` with one ``executemany`` of ``sql`` inside the caller's transaction."""
    pending = hits.take()
    if not pending:
        return 0
    try:
        conn.executemany(sql, [args(h) for h in pending])
    except BaseException:
        hits.restore(pending)
        raise
    return len(pending)


def flush(db: Database, write: Callable[[Connection], int], *, wait: bool) -> int:
    """Run ``write`` in a transaction of its own; returns what it returns.

    ``wait`` off: give up at once when another thread is writing (the next hit tries again), so
    a hit never queues behind a store. A failed write is logged: the counts wait for the next."""
    if not db.lock.acquire(blocking=wait):
        return 0
    try:
        with db.tx() as conn:
            return write(conn)
    except Exception:
        log.warning("cache hit counts not written yet", exc_info=True)
        return 0
    finally:
        db.lock.release()
