"""The hub's telemetry store: SQLite, deduplicated on (edge id, event id), acked after commit.

``ingest`` is the link's ``TelemetrySink``: it validates each event, writes the batch in one
transaction with ``synchronous=FULL`` and only then returns the ``TelemetryAck``, so an ack always
means "on disk". Events that fail validation are quarantined in ``rejects`` (never dropped) and
still acknowledged, because re-sending them would never make them valid. The edge id is the
authenticated CURVE key handed in by the link, never a value from the payload.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import msgspec

from shared.sqlite import connect
from shared.telemetry import TelemetryEvent
from shared.wire import Scalar, TelemetryAck, TelemetryBatch

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    edge_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts REAL NOT NULL,
    received REAL NOT NULL,
    response_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    user TEXT NOT NULL,
    route TEXT NOT NULL,
    model TEXT NOT NULL,
    domain TEXT NOT NULL,
    task TEXT NOT NULL,
    cost_usd REAL NOT NULL,
    latency_s REAL,
    ttft_s REAL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_hit INTEGER NOT NULL,
    fallback INTEGER NOT NULL,
    escalated INTEGER NOT NULL,
    regeneration INTEGER NOT NULL,
    error INTEGER NOT NULL,
    canary INTEGER NOT NULL,
    policy_version TEXT NOT NULL,
    rating REAL,
    attrs BLOB NOT NULL,
    PRIMARY KEY (edge_id, event_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE INDEX IF NOT EXISTS events_response ON events(response_id);
CREATE TABLE IF NOT EXISTS rejects (
    edge_id TEXT NOT NULL, received REAL NOT NULL, reason TEXT NOT NULL, attrs BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS edge_drops (
    edge_id TEXT PRIMARY KEY, dropped_events INTEGER NOT NULL, dropped_bytes INTEGER NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS edge_spool (
    edge_id TEXT PRIMARY KEY, backlog INTEGER NOT NULL, updated REAL NOT NULL
);
"""

_COLUMNS = (
    "edge_id, event_id, kind, ts, received, response_id, tenant, user, route, model, domain, task, "
    "cost_usd, latency_s, ttft_s, input_tokens, output_tokens, cache_hit, fallback, escalated, "
    "regeneration, error, canary, policy_version, rating, attrs"
)


class IngestObserver(Protocol):
    def observe_ingest(self, event: TelemetryEvent, duplicate: bool) -> None: ...

    def observe_reject(self, reason: str) -> None: ...


class TelemetryStore:
    def __init__(self, path: Path, observer: IngestObserver | None = None) -> None:
        self.path = path
        self.observer = observer
        self._lock = threading.Lock()
        self._encoder = msgspec.msgpack.Encoder()
        # FULL: an ack promises the batch is on disk, so a power cut must not take it back
        self._db: sqlite3.Connection | None = connect(path, synchronous="FULL")
        self._db.executescript(_SCHEMA)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("telemetry store is closed")
        return self._db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def ingest(self, edge_id: str, batch: TelemetryBatch) -> TelemetryAck:
        if not edge_id:
            raise ValueError("edge_id must be the authenticated key of the sending edge")
        now = time.time()
        events, rejects = self._parse(edge_id, batch, now)
        with self.transaction() as db:
            inserted = [self._insert(db, row) for _, row in events]
            db.executemany("INSERT INTO rejects VALUES (?, ?, ?, ?)", rejects)
            if batch.backlog is not None:
                db.execute(
                    "INSERT OR REPLACE INTO edge_spool VALUES (?, ?, ?)", (edge_id, int(batch.backlog), now)
                )
            for event, _ in events:
                if event.kind == "spool_drops":
                    self._record_drops(db, edge_id, event, now)
        if self.observer is not None:
            for (event, _), fresh in zip(events, inserted, strict=True):
                self.observer.observe_ingest(event, duplicate=not fresh)
            for _, _, reason, _ in rejects:
                self.observer.observe_reject(reason)
        return TelemetryAck(batch_id=batch.batch_id, accepted=len(batch.events))

    def _parse(
        self, edge_id: str, batch: TelemetryBatch, now: float
    ) -> tuple[list[tuple[TelemetryEvent, tuple[object, ...]]], list[tuple[str, float, str, bytes]]]:
        """(valid events with their rows, reject rows): one bad event never fails the batch."""
        events: list[tuple[TelemetryEvent, tuple[object, ...]]] = []
        rejects: list[tuple[str, float, str, bytes]] = []
        for attrs in batch.events:
            try:
                event = TelemetryEvent.from_attributes(attrs)
            except msgspec.ValidationError as exc:
                rejects.append((edge_id, now, str(exc), self._encoder.encode(attrs)))
                continue
            events.append((event, self._row(edge_id, event, now, attrs)))
        return events, rejects

    @staticmethod
    def _insert(db: sqlite3.Connection, row: tuple[object, ...]) -> bool:
        """Store one event's row; False when the edge already sent it (a resent batch)."""
        mark = db.total_changes
        db.execute(f"INSERT OR IGNORE INTO events({_COLUMNS}) VALUES ({','.join('?' * 26)})", row)
        return db.total_changes > mark

    @staticmethod
    def _record_drops(db: sqlite3.Connection, edge_id: str, event: TelemetryEvent, now: float) -> None:
        # the edge's counters are cumulative, so the largest report is the current one
        db.execute(
            "INSERT INTO edge_drops VALUES (?, ?, ?, ?) ON CONFLICT(edge_id) DO UPDATE SET "
            "dropped_events = MAX(dropped_events, excluded.dropped_events), "
            "dropped_bytes = MAX(dropped_bytes, excluded.dropped_bytes), "
            "updated = excluded.updated",
            (edge_id, event.dropped_events, event.dropped_bytes, now),
        )

    def _row(
        self, edge_id: str, e: TelemetryEvent, now: float, attrs: dict[str, Scalar]
    ) -> tuple[object, ...]:
        return (
            edge_id,
            e.event_id,
            e.kind,
            e.timestamp,
            now,
            e.response_id,
            e.tenant,
            e.user,
            e.route,
            e.response_model or e.request_model,
            e.domain,
            e.task,
            e.cost_usd,
            e.latency_s,
            e.ttft_s,
            e.input_tokens,
            e.output_tokens,
            int(e.is_cache_hit),
            int(e.fallback),
            int(e.escalated),
            int(e.regeneration),
            int(bool(e.error_type)),
            int(e.canary),
            e.policy_version,
            e.rating,
            self._encoder.encode(attrs),
        )

    def count(self, kind: str | None = None) -> int:
        with self._lock:
            if kind is None:
                return int(self.db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
            return int(self.db.execute("SELECT COUNT(*) FROM events WHERE kind = ?", (kind,)).fetchone()[0])

    def events(
        self, since: float | None = None, until: float | None = None, kind: str = "request"
    ) -> list[tuple[str, TelemetryEvent]]:
        """(edge id, event) pairs in time order, decoded from the stored attributes."""
        decoder = msgspec.msgpack.Decoder(dict[str, Scalar])
        with self._lock:
            rows = self.db.execute(
                "SELECT edge_id, attrs FROM events WHERE kind = ? AND ts >= ? AND ts < ? ORDER BY ts",
                (
                    kind,
                    since if since is not None else float("-inf"),
                    until if until is not None else float("inf"),
                ),
            ).fetchall()
        return [(edge, TelemetryEvent.from_attributes(decoder.decode(blob))) for edge, blob in rows]

    def feedback_by_response(self) -> dict[str, float]:
        """Mean user rating per response id."""
        with self._lock:
            rows = self.db.execute(
                "SELECT response_id, AVG(rating) FROM events WHERE kind = 'feedback' AND rating IS NOT NULL "
                "GROUP BY response_id"
            ).fetchall()
        return {r: float(v) for r, v in rows}

    def rejects(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(e, r) for e, r in self.db.execute("SELECT edge_id, reason FROM rejects").fetchall()]

    def drops(self) -> dict[str, int]:
        with self._lock:
            return {e: int(n) for e, n in self.db.execute("SELECT edge_id, dropped_events FROM edge_drops")}

    def backlogs(self) -> dict[str, tuple[int, float]]:
        """Per edge: events its spool still held behind the latest batch, and when that batch came."""
        with self._lock:
            rows = self.db.execute("SELECT edge_id, backlog, updated FROM edge_spool").fetchall()
        return {e: (int(n), float(t)) for e, n, t in rows}

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def store_path(home: Path) -> Path:
    """Where the hub keeps its telemetry database under ``--home``."""
    return home / "telemetry" / "events.db"
