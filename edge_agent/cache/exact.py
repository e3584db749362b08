"""Exact-match answer cache in SQLite: TTL, a pool of answers for sampled requests, LRU eviction.

The key (``keys.exact_key``) already contains the tenant scope, so a lookup can only ever see
the asking tenant's rows. Counters kept by triggers make the size cap O(1) to check.

A sampled request (temperature > 0, no seed) is served from a pool so a caller who asks again gets
another of the model's answers, never the one just served while the pool holds more than one. The
pool is ready once it holds ``pool_size`` distinct answers or once the model has repeated itself:
a model that is deterministic for a prompt (most small models at most prompts, whatever the
temperature) never yields a second text, and waiting for one sent every repeat upstream.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Sequence
from typing import Any

from edge_agent.cache.base import CachedAnswer, Lookup
from edge_agent.cache.db import Connection, Database
from edge_agent.cache.forms import KeyFilter
from edge_agent.cache.hits import HitLog, flush, write_log
from edge_agent.cache.hot import HotRows
from edge_agent.cache.keys import CacheRequest
from shared.config import CacheSettings
from shared.taxonomy import Route

# at most this many rows of one key are read: a pool larger than any configured one
_POOL_ROWS = 64
_RECENT_KEYS = 4096  # requests whose keys are remembered by their exact contents

SCHEMA = """
CREATE TABLE IF NOT EXISTS exact_entries(
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    tenant TEXT NOT NULL,
    answer TEXT NOT NULL,
    answer_hash TEXT NOT NULL,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    last_used REAL NOT NULL,
    served INTEGER NOT NULL DEFAULT 1,
    bytes INTEGER NOT NULL,
    repeats INTEGER NOT NULL DEFAULT 0,
    UNIQUE(key, answer_hash)
);
CREATE INDEX IF NOT EXISTS exact_lru ON exact_entries(last_used);
CREATE INDEX IF NOT EXISTS exact_expiry ON exact_entries(expires);
CREATE TABLE IF NOT EXISTS exact_stats(id INTEGER PRIMARY KEY CHECK (id = 0), n INTEGER, bytes INTEGER);
INSERT OR IGNORE INTO exact_stats VALUES (0, 0, 0);
CREATE TRIGGER IF NOT EXISTS exact_ins AFTER INSERT ON exact_entries BEGIN
    UPDATE exact_stats SET n = n + 1, bytes = bytes + new.bytes WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS exact_del AFTER DELETE ON exact_entries BEGIN
    UPDATE exact_stats SET n = n - 1, bytes = bytes - old.bytes WHERE id = 0;
END;
"""


def pool_target(req: CacheRequest, pool_size: int) -> int:
    """Greedy or seeded sampling is reproducible, so one answer is the answer; else keep a pool."""
    if req.params.temperature <= 0.0 or req.params.seed is not None:
        return 1
    return max(1, pool_size)


def pool_ready(distinct: int, repeated: bool, target: int) -> bool:
    """Whether a pool may serve: full, or the model gave an answer it had already given."""
    return distinct >= target or (distinct > 0 and repeated)


def add_repeats_column(conn: Connection, table: str) -> None:
    """Files written before pools counted repeats lack the column; every existing row has 0."""
    columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    if "repeats" not in columns:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN repeats INTEGER NOT NULL DEFAULT 0")


class ExactCache:
    def __init__(self, db: Database, settings: CacheSettings | None = None) -> None:
        self.db = db
        self.settings = settings or CacheSettings()
        self.hits = HitLog()
        self.keys = KeyFilter()  # every key stored: a key never stored misses with no read
        self.hot = HotRows()  # the rows of recently read keys: a repeated hit reads nothing
        self._recent_keys: dict[tuple[object, ...], str] = {}
        with self.db.lock:
            self.db.conn.executescript(SCHEMA)
            add_repeats_column(self.db.conn, "exact_entries")
        self._load_keys(self.db.foreign_version() or 0)

    def key(self, req: CacheRequest) -> str:
        """``req``'s exact key; a request exactly like a recent one reuses that one's key, unless
        it is time-sensitive (its key has the hour in it)."""
        raw = req.raw_identity
        key = self._recent_keys.get(raw)
        if key is None:
            key = req.exact_key(self.settings.time_bucket_s)
            if not req.time_sensitive:
                if len(self._recent_keys) >= _RECENT_KEYS:
                    with contextlib.suppress(StopIteration, RuntimeError):  # another thread's turn
                        self._recent_keys.pop(next(iter(self._recent_keys)), None)
                self._recent_keys[raw] = key
        return key

    def _load_keys(self, version: int) -> None:
        self.hot.clear()  # another process's commit: any key's rows may have changed
        with self.db.snapshot() as conn:
            self.keys.replace((str(k) for (k,) in conn.execute("SELECT key FROM exact_entries")), version)

    def get(self, req: CacheRequest) -> Lookup:
        """A read of this thread's snapshot and an in-memory note of the hit: no write, no lock.
        A key never stored (the ``keys`` filter) is a miss without the read."""
        t0 = time.perf_counter()
        key = self.key(req)
        # a write in progress holds the lock: the check waits for the next lookup, not the write
        version = self.db.foreign_version(wait=False)
        if version is not None and version != self.keys.version:
            self._load_keys(version)  # another process committed: it may have stored keys
        if not self.keys.may_hold(key):
            return Lookup(None, "no_entry", _ms(t0))
        now = req.now
        target = pool_target(req, self.settings.pool_size)
        rows = [r for r in self._rows(key) if r[6] > now]
        hits = self.hits
        # least served first, unwritten hits included, so a pool rotates from one hit to the next
        rows.sort(key=lambda r: (r[4] + hits.served(r[0]), hits.last_used(r[0], r[5])))
        rows = rows[: target + 1]
        # fewer rows than the target means these are all of them, so the repeat check is complete
        if not pool_ready(len(rows), any(r[3] for r in rows), target):
            # a sampled request whose pool is not ready: a fresh answer grows the pool, so
            # the same caller does not see the same text again and again
            reason = "pool_filling" if rows else "no_entry"
            return Lookup(None, reason, _ms(t0))
        entry_id, answer, model = rows[0][0], rows[0][1], rows[0][2]
        hits.record(entry_id, now)
        if hits.due:
            self.flush_hits(wait=False)
        hit = CachedAnswer(entry_id=entry_id, text=answer, model=model, stage=Route.EXACT_CACHE)
        return Lookup(hit, "exact_key", _ms(t0), {"pool": len(rows)})

    def _rows(self, key: str) -> list[tuple[Any, ...]]:
        """(id, answer, model, repeats, served, last_used, expires) of ``key``'s entries."""
        rows = self.hot.get(key)
        if rows is None:
            generation = self.hot.generation
            with self.db.snapshot() as conn:
                rows = conn.execute(
                    "SELECT id, answer, model, repeats, served, last_used, expires FROM exact_entries"
                    " WHERE key = ? LIMIT ?",
                    (key, _POOL_ROWS),
                ).fetchall()
            self.hot.keep(key, rows, generation)
        return rows

    def flush_hits(self, *, wait: bool = True) -> int:
        """Write the hits noted since the last flush in one transaction; returns the rows touched
        (``hits.flush``: ``wait`` off gives up at once while another thread writes)."""
        return flush(self.db, self._write_hits, wait=wait) if len(self.hits) else 0

    def _write_hits(self, conn: Connection) -> int:
        if len(self.hits):
            self.hot.clear()  # served counts order a pool's rotation: read them afresh
        return write_log(
            conn,
            self.hits,
            "UPDATE exact_entries SET served = served + ?, last_used = max(last_used, ?) WHERE id = ?",
            lambda h: (h.served, h.last_used, h.row),
        )

    def put(self, req: CacheRequest, answer: str, model: str) -> int | None:
        """Store ``answer``; returns its row id (None when the pool already holds this text)."""
        return self.put_many([(req, answer, model)])[0]

    def put_many(self, rows: Sequence[tuple[CacheRequest, str, str]]) -> list[int | None]:
        """Store each (request, answer, model) in one transaction: one commit, one eviction pass
        and one write of the noted hits for all of them (``put`` of each, otherwise)."""
        if not rows:
            return []
        keys = [self.key(req) for req, _, _ in rows]
        # a key the filter never held has no rows yet, so nothing of it to replace or trim (but a
        # key twice in one batch: its second store may replace its first)
        fresh: list[bool] = []
        for key in keys:
            fresh.append(not self.keys.may_hold(key))
            self.keys.add(key)
        try:
            with self.db.tx() as conn:
                ids = [
                    self._insert(conn, req, answer, model, new)
                    for (req, answer, model), new in zip(rows, fresh, strict=True)
                ]
                # the touches first: eviction must see which entries were used lately
                self._write_hits(conn)
                evicted = self._evict(conn, max(req.now for req, _, _ in rows))
        finally:  # committed or rolled back, what was read of these keys may be stale
            self.hot.forget(keys)
        if evicted:
            self.hot.clear()
        return ids

    def _insert(self, conn: Connection, req: CacheRequest, answer: str, model: str, new: bool) -> int | None:
        key = self.key(req)
        now = req.now
        ttl = min(self.settings.exact_ttl_s, self.settings.time_bucket_s) if req.time_sensitive else None
        expires = now + (ttl if ttl is not None else self.settings.exact_ttl_s)
        answer_hash = hashlib.sha256(answer.encode()).hexdigest()
        size = len(answer.encode()) + len(key) + 64
        target = pool_target(req, self.settings.pool_size)
        if target == 1 and not new:
            conn.execute("DELETE FROM exact_entries WHERE key = ? AND answer_hash != ?", (key, answer_hash))
        cur = conn.execute(
            "INSERT OR IGNORE INTO exact_entries"
            "(key, tenant, answer, answer_hash, model, created, expires, last_used, served, bytes)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
            (key, req.tenant_scope, answer, answer_hash, model, now, expires, now, size),
        )
        row_id: int | None = cur.lastrowid if cur.rowcount else None
        if row_id is None:
            # the model gave this text again: evidence it will keep doing so (a ready pool),
            # and a fresh answer, so an expired copy that blocked the insert lives on
            conn.execute(
                "UPDATE exact_entries SET repeats = repeats + ?, expires = max(expires, ?)"
                " WHERE key = ? AND answer_hash = ?",
                (int(target > 1), expires, key, answer_hash),
            )
        if target > 1 and not new:
            conn.execute(
                "DELETE FROM exact_entries WHERE key = ? AND id NOT IN"
                " (SELECT id FROM exact_entries WHERE key = ? ORDER BY created DESC LIMIT ?)",
                (key, key, target),
            )
        return row_id

    def _evict(self, c: Connection, now: float) -> int:
        """Delete expired rows and what is over the caps; returns the rows deleted."""
        gone = c.execute(
            "DELETE FROM exact_entries WHERE id IN"
            " (SELECT id FROM exact_entries WHERE expires <= ? LIMIT 256)",
            (now,),
        ).rowcount
        n, size = c.execute("SELECT n, bytes FROM exact_stats WHERE id = 0").fetchone()
        over = max(n - self.settings.max_entries, 0)
        if size > self.settings.max_bytes:
            avg = size / max(n, 1)
            over = max(over, int((size - self.settings.max_bytes) / max(avg, 1.0)) + 1)
        if over:
            gone += c.execute(
                "DELETE FROM exact_entries WHERE id IN"
                " (SELECT id FROM exact_entries ORDER BY last_used LIMIT ?)",
                (over,),
            ).rowcount
        return int(gone)

    def stats(self) -> tuple[int, int]:
        with self.db.read() as conn:
            n, size = conn.execute("SELECT n, bytes FROM exact_stats WHERE id = 0").fetchone()
        return int(n), int(size)

    def clear_tenant(self, tenant_scope: str) -> int:
        try:
            with self.db.tx() as conn:
                gone = conn.execute("DELETE FROM exact_entries WHERE tenant = ?", (tenant_scope,))
                return int(gone.rowcount)
        finally:
            self.hot.clear()


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0
