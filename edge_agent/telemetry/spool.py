"""Durable, byte-capped SQLite spool for telemetry events awaiting delivery to the hub.

Delivery is at least once: ``lease`` marks a batch of rows in flight and ``ack`` deletes them only
after the hub reports it has persisted them, so a crash (even ``kill -9``) between the two leaves
the rows in the spool and the next process re-sends them; the hub dedupes on event id. When the
spool would exceed its byte cap the oldest rows that are not in flight are dropped, and every drop
is added to persistent counters that are reported to the hub and exposed as metrics.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import msgspec

from shared.telemetry import TelemetryEvent
from shared.wire import Scalar

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL,
    batch_id TEXT
);
CREATE INDEX IF NOT EXISTS events_batch ON events(batch_id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class SpoolStats:
    pending_events: int
    pending_bytes: int
    in_flight_events: int
    dropped_events: int
    dropped_bytes: int
    appended_events: int
    delivered_events: int


@dataclass(frozen=True, slots=True)
class Lease:
    batch_id: str
    events: list[dict[str, Scalar]]
    size: int


class TelemetrySpool:
    """One SQLite file; safe to share between the request path and the delivery task (one lock)."""

    def __init__(self, path: Path, max_bytes: int = 64 * 1024 * 1024) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(dict[str, Scalar])
        self._db: sqlite3.Connection | None = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None
        )
        # WAL + NORMAL survives a killed process (the WAL is in the OS page cache); only power loss
        # could cost the last transactions, which is the usual trade for a per-request write.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        # leases of a previous process died with it: their rows are pending again
        self._db.execute("UPDATE events SET batch_id = NULL WHERE batch_id IS NOT NULL")
        self._bytes = int(self._conn.execute("SELECT COALESCE(SUM(size), 0) FROM events").fetchone()[0])

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("telemetry spool is closed")
        return self._db

    def append(self, event: TelemetryEvent) -> bool:
        """Store ``event``; False when it alone exceeds the cap (it is counted as dropped)."""
        payload = self._encoder.encode(event.to_attributes())
        size = len(payload)
        with self._lock:
            db = self._conn
            db.execute("BEGIN IMMEDIATE")
            try:
                if size > self.max_bytes:
                    self._count(db, dropped_events=1, dropped_bytes=size)
                    db.execute("COMMIT")
                    return False
                if self._bytes + size > self.max_bytes:
                    self._evict(db, self._bytes + size - self.max_bytes)
                if self._bytes + size > self.max_bytes:
                    # everything left is in flight; the new event is the one that cannot fit
                    self._count(db, dropped_events=1, dropped_bytes=size)
                    db.execute("COMMIT")
                    return False
                cur = db.execute(
                    "INSERT OR IGNORE INTO events(event_id, payload, size) VALUES (?, ?, ?)",
                    (event.event_id, payload, size),
                )
                if cur.rowcount:
                    self._bytes += size
                    self._count(db, appended_events=1)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return True

    def _evict(self, db: sqlite3.Connection, need: int) -> None:
        freed = 0
        victims: list[int] = []
        for seq, size in db.execute("SELECT seq, size FROM events WHERE batch_id IS NULL ORDER BY seq"):
            victims.append(seq)
            freed += size
            if freed >= need:
                break
        if not victims:
            return
        db.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in victims])
        self._bytes -= freed
        self._count(db, dropped_events=len(victims), dropped_bytes=freed)

    def _count(self, db: sqlite3.Connection, **deltas: int) -> None:
        db.executemany(
            "INSERT INTO counters(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            list(deltas.items()),
        )

    def lease(self, max_events: int = 256, max_bytes: int = 1024 * 1024) -> Lease | None:
        """Mark the oldest pending rows (at least one, at most the limits) as one in-flight batch."""
        with self._lock:
            db = self._conn
            rows = db.execute(
                "SELECT seq, payload, size FROM events WHERE batch_id IS NULL ORDER BY seq LIMIT ?",
                (max_events,),
            ).fetchall()
            chosen: list[tuple[int, bytes]] = []
            total = 0
            for seq, payload, size in rows:
                if chosen and total + size > max_bytes:
                    break
                chosen.append((seq, payload))
                total += size
            if not chosen:
                return None
            batch_id = uuid.uuid4().hex
            db.execute("BEGIN IMMEDIATE")
            db.executemany("UPDATE events SET batch_id = ? WHERE seq = ?", [(batch_id, s) for s, _ in chosen])
            db.execute("COMMIT")
        return Lease(batch_id, [self._decoder.decode(p) for _, p in chosen], total)

    def ack(self, batch_id: str) -> int:
        """The hub persisted ``batch_id``: forget its rows. Returns how many were removed."""
        with self._lock:
            db = self._conn
            db.execute("BEGIN IMMEDIATE")
            freed = db.execute("SELECT COALESCE(SUM(size), 0) FROM events WHERE batch_id = ?", (batch_id,))
            size = int(freed.fetchone()[0])
            removed = db.execute("DELETE FROM events WHERE batch_id = ?", (batch_id,)).rowcount
            self._count(db, delivered_events=removed)
            db.execute("COMMIT")
            self._bytes -= size
        return removed

    def release(self, batch_id: str) -> None:
        """Delivery failed: the batch's rows are pending again, in their original order."""
        with self._lock:
            self._conn.execute("UPDATE events SET batch_id = NULL WHERE batch_id = ?", (batch_id,))

    def stats(self) -> SpoolStats:
        with self._lock:
            db = self._conn
            pending, in_flight = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(batch_id IS NOT NULL), 0) FROM events"
            ).fetchone()
            counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
            return SpoolStats(
                pending_events=int(pending),
                pending_bytes=self._bytes,
                in_flight_events=int(in_flight),
                dropped_events=int(counters.get("dropped_events", 0)),
                dropped_bytes=int(counters.get("dropped_bytes", 0)),
                appended_events=int(counters.get("appended_events", 0)),
                delivered_events=int(counters.get("delivered_events", 0)),
            )

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
