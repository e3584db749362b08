"""Durable, byte-capped SQLite spool for telemetry events awaiting delivery to the hub.

Delivery is at least once: ``lease`` marks a batch of rows in flight and ``ack`` deletes them only
after the hub reports it has persisted them, so a crash (even ``kill -9``) between the two leaves
the rows in the spool and the next process re-sends them; the hub dedupes on event id. When the
spool would exceed its byte cap the oldest rows that are not in flight are dropped, and every drop
is added to persistent counters that are reported to the hub and exposed as metrics.

Each row carries a CRC-32 of its payload. A row whose bytes no longer match it, or that does not
decode, is moved to ``quarantine`` and counted instead of being sent or blocking the rows behind
it. A row the sender keeps failing on (``fail``: the hub refused it, or no frame can carry it) is
retried alone, and quarantined after ``max_tries``. A full disk or an I/O error costs the event
being appended, counted as dropped, never the request that produced it.

``append_many`` stores a batch in one transaction: on a busy edge the commit, not the row, is
what each answer would otherwise pay for.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from shared.sqlite import connect
from shared.telemetry import TelemetryEvent
from shared.wire import Scalar

log = logging.getLogger(__name__)

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
CREATE TABLE IF NOT EXISTS quarantine (
    event_id TEXT, payload BLOB NOT NULL, reason TEXT NOT NULL, tries INTEGER NOT NULL
);
"""
_Row = tuple[str, bytes, int]  # event id, payload, its size
_INSERT = "INSERT OR IGNORE INTO events(event_id, payload, size, crc) VALUES (?, ?, ?, ?)"
# columns added after the first release; a file without them gets them on open (NULL crc: unchecked)
_ADDED_COLUMNS = (("crc", "INTEGER"), ("tries", "INTEGER NOT NULL DEFAULT 0"))
# SQLite's primary result codes for "the disk cannot take this write"
_DISK_ERRORS = frozenset({"SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN"})


@dataclass(frozen=True, slots=True)
class SpoolStats:
    pending_events: int
    pending_bytes: int
    in_flight_events: int
    dropped_events: int
    dropped_bytes: int
    appended_events: int
    delivered_events: int
    corrupt_events: int = 0  # failed their checksum or did not decode: quarantined
    quarantined_events: int = 0  # the sender failed on them ``max_tries`` times: quarantined


@dataclass(frozen=True, slots=True)
class Lease:
    batch_id: str
    events: list[dict[str, Scalar]]
    size: int


class TelemetrySpool:
    """One SQLite file; safe to share between the request path and the delivery task (one lock)."""

    def __init__(self, path: Path, max_bytes: int = 64 * 1024 * 1024, max_tries: int = 3) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.path = path
        self.max_bytes = max_bytes
        self.max_tries = max_tries
        # drops the disk could not even record; written to ``counters`` with the next good append
        self._unwritten = {"dropped_events": 0, "dropped_bytes": 0}
        self._last_disk_error: sqlite3.Error | None = None
        self._lock = threading.Lock()
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(dict[str, Scalar])
        # WAL + NORMAL survives a killed process (the WAL is in the OS page cache); only power loss
        # could cost the last transactions, which is the usual trade for a per-request write.
        self._db: sqlite3.Connection | None = connect(path, synchronous="NORMAL")
        self._db.executescript(_SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(events)")}
        for name, decl in _ADDED_COLUMNS:
            if name not in have:
                self._db.execute(f"ALTER TABLE events ADD COLUMN {name} {decl}")
        # leases of a previous process died with it: their rows are pending again
        self._db.execute("UPDATE events SET batch_id = NULL WHERE batch_id IS NOT NULL")
        self._bytes = int(self._conn.execute("SELECT COALESCE(SUM(size), 0) FROM events").fetchone()[0])

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("telemetry spool is closed")
        return self._db

    def append(self, event: TelemetryEvent) -> bool:
        """Store ``event``; False when it was dropped (and counted): alone over the cap, or the
        disk refused the write."""
        return self.append_many([event])[0]

    def append_many(self, events: Sequence[TelemetryEvent]) -> list[bool]:
        """Store ``events`` in one transaction; each flag is what ``append`` would return for its
        event. A batch the disk refuses is tried again one event at a time, so that only the
        events that do not fit are dropped (and counted)."""
        payloads = [self._encode(e) for e in events]
        rows = [(e.event_id, data, len(data)) for e, data in zip(events, payloads, strict=True)]
        if not rows:
            return []
        with self._lock:
            stored = self._write(rows)
            if stored is not None:
                return stored
            if len(rows) == 1:
                self._lost(rows[0][2])
                return [False]
            flags: list[bool] = []
            for row in rows:
                one = self._write([row])
                if one is None:
                    self._lost(row[2])
                    flags.append(False)
                else:
                    flags.extend(one)
            return flags

    def _encode(self, event: TelemetryEvent) -> bytes:
        return self._encoder.encode(event.to_attributes())

    def _write(self, rows: list[_Row]) -> list[bool] | None:
        """Insert ``rows`` in one transaction; None when the disk refused it (nothing written)."""
        held = self._bytes
        try:
            return self._append(rows)
        except sqlite3.Error as exc:
            self._bytes = held
            if not _disk_error(exc):
                raise
            self._last_disk_error = exc
            return None

    def _lost(self, size: int) -> None:
        """One event the disk could not take: counted in memory until a write succeeds."""
        if not self._unwritten["dropped_events"]:
            log.warning(
                "telemetry spool %s cannot be written (%s): counting drops", self.path, self._last_disk_error
            )
        self._unwritten["dropped_events"] += 1
        self._unwritten["dropped_bytes"] += size

    def _append(self, rows: list[_Row]) -> list[bool]:
        db = self._conn
        db.execute("BEGIN IMMEDIATE")
        try:
            if any(self._unwritten.values()):
                self._count(db, **self._unwritten)
            stored = self._insert_fitting(db, rows)
            if stored is None:
                stored = [self._insert(db, event_id, payload, size) for event_id, payload, size in rows]
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._unwritten = dict.fromkeys(self._unwritten, 0)
        return stored

    def _insert_fitting(self, db: sqlite3.Connection, rows: list[_Row]) -> list[bool] | None:
        """The usual batch, in one statement: new events that fit without evicting anything.
        None (and nothing written) when one must be looked at alone: a spool near its cap, or an
        event id already stored."""
        total = sum(size for _, _, size in rows)
        if self._bytes + total > self.max_bytes:
            return None
        db.execute("SAVEPOINT fitting")
        before = db.total_changes
        db.executemany(_INSERT, [(event_id, data, size, zlib.crc32(data)) for event_id, data, size in rows])
        if db.total_changes - before != len(rows):
            db.execute("ROLLBACK TO fitting")
            db.execute("RELEASE fitting")
            return None
        db.execute("RELEASE fitting")
        self._bytes += total
        self._count(db, appended_events=len(rows))
        return [True] * len(rows)

    def _insert(self, db: sqlite3.Connection, event_id: str, payload: bytes, size: int) -> bool:
        if size > self.max_bytes:
            self._count(db, dropped_events=1, dropped_bytes=size)
            return False
        if self._bytes + size > self.max_bytes:
            self._evict(db, self._bytes + size - self.max_bytes)
        if self._bytes + size > self.max_bytes:
            # everything left is in flight; the new event is the one that cannot fit
            self._count(db, dropped_events=1, dropped_bytes=size)
            return False
        cur = db.execute(_INSERT, (event_id, payload, size, zlib.crc32(payload)))
        if cur.rowcount:
            self._bytes += size
            self._count(db, appended_events=1)
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
        """Mark the oldest pending rows (at least one, at most the limits) as one in-flight batch.

        Damaged rows met on the way are quarantined, and so is a row whose tries are used up; a row
        the sender failed on before travels alone, so it cannot take a batch of good rows down with it.
        """
        with self._lock:
            db = self._conn
            db.execute("BEGIN IMMEDIATE")
            freed = 0
            try:
                while True:
                    chosen, total, dropped = self._choose(db, max_events, max_bytes)
                    freed += dropped
                    if chosen or not dropped:
                        break  # found rows, or there is nothing left but rows in flight
                batch_id = uuid.uuid4().hex
                db.executemany(
                    "UPDATE events SET batch_id = ? WHERE seq = ?", [(batch_id, seq) for seq, _ in chosen]
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._bytes -= freed
        if not chosen:
            return None
        return Lease(batch_id, [event for _, event in chosen], total)

    def _choose(
        self, db: sqlite3.Connection, max_events: int, max_bytes: int
    ) -> tuple[list[tuple[int, dict[str, Scalar]]], int, int]:
        """(rows to lease with their events, their bytes, bytes quarantined on the way)."""
        rows = db.execute(
            "SELECT seq, event_id, payload, size, crc, tries FROM events WHERE batch_id IS NULL"
            " ORDER BY seq LIMIT ?",
            (max_events,),
        ).fetchall()
        chosen: list[tuple[int, dict[str, Scalar]]] = []
        total = dropped = 0
        for seq, event_id, payload, size, crc, tries in rows:
            event, reason = self._check(payload, crc)
            if event is None or tries >= self.max_tries:
                self._quarantine(db, seq, event_id, payload, reason or "poison", tries)
                dropped += size
                continue
            if chosen and (tries or total + size > max_bytes):
                break
            chosen.append((seq, event))
            total += size
            if tries:
                break
        return chosen, total, dropped

    def _check(self, payload: bytes, crc: int | None) -> tuple[dict[str, Scalar] | None, str]:
        if crc is not None and zlib.crc32(payload) != crc:
            return None, "checksum"
        try:
            return self._decoder.decode(payload), ""
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None, "undecodable"

    def _quarantine(
        self, db: sqlite3.Connection, seq: int, event_id: str, payload: bytes, reason: str, tries: int
    ) -> None:
        log.warning("telemetry event %s quarantined: %s", event_id, reason)
        db.execute("INSERT INTO quarantine VALUES (?, ?, ?, ?)", (event_id, payload, reason, tries))
        db.execute("DELETE FROM events WHERE seq = ?", (seq,))
        self._count(db, **{"quarantined_events" if reason == "poison" else "corrupt_events": 1})

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

    def fail(self, batch_id: str) -> None:
        """The sender failed on the batch itself (refused, or unsendable): pending again, one try
        used up by each of its rows."""
        with self._lock:
            self._conn.execute(
                "UPDATE events SET batch_id = NULL, tries = tries + 1 WHERE batch_id = ?", (batch_id,)
            )

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
                dropped_events=int(counters.get("dropped_events", 0)) + self._unwritten["dropped_events"],
                dropped_bytes=int(counters.get("dropped_bytes", 0)) + self._unwritten["dropped_bytes"],
                appended_events=int(counters.get("appended_events", 0)),
                delivered_events=int(counters.get("delivered_events", 0)),
                corrupt_events=int(counters.get("corrupt_events", 0)),
                quarantined_events=int(counters.get("quarantined_events", 0)),
            )

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _disk_error(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the disk refused a write (full, I/O error), not that the code is wrong."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if any(name == code or name.startswith(code + "_") for code in _DISK_ERRORS):
        return True
    text = str(exc)
    return "disk is full" in text or "disk I/O error" in text
