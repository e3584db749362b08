"""The hub's global answer cache: which answers may be shared, and a versioned log of changes.

An answer becomes shared only when it passed the hub's checks, the question is generic (not
personal, not time-sensitive) and at least ``min_tenants`` distinct tenants asked it; until then
it is private to whoever asked. Every change gets the next sequence number, which is what the
publisher sends and what a lagging edge asks a snapshot from. Deletes stay as tombstones so an
edge that was offline learns about them too.

Aliases live in the same log: a question the hub's judge found a cached answer right for, owned
by one tenant of one edge (``edge``, ``tenant``). They take sequence numbers like any change, but
only their owner's edge ever reads them (``changes_since(..., edge=...)``). The judge's verdicts
are kept too (``gc_judged``), so a pair is never judged twice.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import NamedTuple

from shared.cache_text import GlobalEntry, alias_key, global_key, is_generic, normalize_text
from shared.sqlite import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS gc_entries(
    key TEXT PRIMARY KEY,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    family TEXT NOT NULL,
    sys_hash TEXT NOT NULL,
    domain TEXT NOT NULL,
    op TEXT NOT NULL DEFAULT 'pending',   -- pending | put | delete
    version INTEGER NOT NULL DEFAULT 0,   -- sequence number of the last published change
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS gc_version ON gc_entries(version);
CREATE TABLE IF NOT EXISTS gc_tenants(
    key TEXT NOT NULL REFERENCES gc_entries(key) ON DELETE CASCADE,
    tenant TEXT NOT NULL,
    first_seen REAL NOT NULL,
    PRIMARY KEY (key, tenant)
);
CREATE TABLE IF NOT EXISTS gc_meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO gc_meta VALUES ('seq', 0);
CREATE TABLE IF NOT EXISTS gc_judged(
    pair TEXT PRIMARY KEY,
    approved INTEGER NOT NULL,
    score REAL NOT NULL,
    judge TEXT NOT NULL,
    judged REAL NOT NULL,
    domain TEXT NOT NULL,
    cached TEXT NOT NULL,   -- the two questions, so a reviewer can grade a sample of verdicts
    query TEXT NOT NULL,
    scores TEXT NOT NULL    -- JSON: each judge's own score, which its thresholds are fitted on
);
"""
# files from before aliases: every row in them is an answer shared with everyone
_ALIAS_COLUMNS = {
    "kind": "TEXT NOT NULL DEFAULT 'answer'",
    "edge": "TEXT NOT NULL DEFAULT ''",
    "tenant": "TEXT NOT NULL DEFAULT ''",
}

_COLUMNS = "SELECT key, op, question, answer, family, sys_hash, domain, version, kind, tenant FROM gc_entries"


class Judged(NamedTuple):
    """A remembered verdict with what a reviewer needs to grade it."""

    domain: str
    cached: str
    query: str
    approved: bool
    scores: dict[str, float]  # judge name → its score


class Verdict(NamedTuple):
    """A remembered judgement."""

    approved: bool
    score: float
    judge: str


class GlobalCacheStore:
    def __init__(self, path: Path | str, *, min_tenants: int = 2) -> None:
        self.min_tenants = min_tenants
        # foreign keys on: forgetting an entry forgets which tenants asked it
        self._conn = connect(path, synchronous="NORMAL", foreign_keys=True)
        self._conn.executescript(SCHEMA)
        have = {row[1] for row in self._conn.execute("PRAGMA table_info(gc_entries)")}
        for column, decl in _ALIAS_COLUMNS.items():
            if column not in have:
                self._conn.execute(f"ALTER TABLE gc_entries ADD COLUMN {column} {decl}")
        self._lock = threading.Lock()
        self._closed = False

    def offer(
        self,
        *,
        tenant: str,
        question: str,
        answer: str,
        family: str,
        sys_hash: str,
        domain: str = "general",
        passed_checks: bool,
        now: float | None = None,
    ) -> GlobalEntry | None:
        """Record that ``tenant`` got ``answer``; returns the entry when this makes it shared."""
        question = normalize_text(question)
        if not passed_checks or not answer.strip() or not is_generic(question):
            return None
        now = time.time() if now is None else now
        key = global_key(question, family, sys_hash)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "INSERT OR IGNORE INTO gc_entries"
                    "(key, question, answer, family, sys_hash, domain, updated)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (key, question, answer, family, sys_hash, domain, now),
                )
                self._conn.execute("INSERT OR IGNORE INTO gc_tenants VALUES (?, ?, ?)", (key, tenant, now))
                op, tenants = self._conn.execute(
                    "SELECT op, (SELECT count(*) FROM gc_tenants WHERE key = ?)"
                    " FROM gc_entries WHERE key = ?",
                    (key, key),
                ).fetchone()
                entry = None
                if op == "pending" and tenants >= self.min_tenants:
                    entry = self._bump(key, "put", now)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return entry

    def retract(self, key: str, now: float | None = None) -> GlobalEntry | None:
        """Withdraw a shared answer (an audit found it wrong); edges delete it on the next delta."""
        now = time.time() if now is None else now
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute("SELECT op FROM gc_entries WHERE key = ?", (key,)).fetchone()
                entry = self._bump(key, "delete", now) if row is not None and row[0] == "put" else None
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return entry

    def _bump(self, key: str, op: str, now: float) -> GlobalEntry:
        self._conn.execute("UPDATE gc_meta SET value = value + 1 WHERE name = 'seq'")
        (seq,) = self._conn.execute("SELECT value FROM gc_meta WHERE name = 'seq'").fetchone()
        self._conn.execute(
            "UPDATE gc_entries SET op = ?, version = ?, updated = ? WHERE key = ?", (op, seq, now, key)
        )
        return self._entry(key)

    def _entry(self, key: str) -> GlobalEntry:
        row = self._conn.execute(
            _COLUMNS + " WHERE key = ?",
            (key,),
        ).fetchone()
        return _to_entry(row)

    @property
    def seq(self) -> int:
        with self._lock:
            (seq,) = self._conn.execute("SELECT value FROM gc_meta WHERE name = 'seq'").fetchone()
        return int(seq)

    def add_alias(
        self,
        *,
        edge: str,
        tenant: str,
        question: str,
        answer: str,
        family: str,
        sys_hash: str,
        domain: str = "general",
        now: float | None = None,
    ) -> GlobalEntry:
        """Publish ``question`` as an alias of ``answer`` for one tenant of one edge (replacing any
        earlier alias of the same question)."""
        question = normalize_text(question)
        now = time.time() if now is None else now
        key = alias_key(edge, tenant, question, family, sys_hash)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "INSERT INTO gc_entries(key, question, answer, family, sys_hash, domain, updated, kind,"
                    " edge, tenant) VALUES (?, ?, ?, ?, ?, ?, ?, 'alias', ?, ?) ON CONFLICT(key) DO UPDATE"
                    " SET answer = excluded.answer, domain = excluded.domain",
                    (key, question, answer, family, sys_hash, domain, now, edge, tenant),
                )
                entry = self._bump(key, "put", now)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return entry

    def remember(
        self,
        pair: str,
        approved: bool,
        score: float,
        judge: str,
        *,
        domain: str = "general",
        cached: str = "",
        query: str = "",
        scores: dict[str, float] | None = None,
        now: float | None = None,
    ) -> None:
        now = time.time() if now is None else now
        by_judge = json.dumps(scores if scores is not None else {judge: score}, sort_keys=True)
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO gc_judged VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (pair, int(approved), score, judge, now, domain, cached, query, by_judge),
            )

    def judged(self, limit: int) -> list[Judged]:
        """Up to ``limit`` remembered verdicts, newest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT domain, cached, query, approved, scores FROM gc_judged ORDER BY judged DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [Judged(str(d), str(c), str(q), bool(a), dict(json.loads(s))) for d, c, q, a, s in rows]

    def verdict(self, pair: str) -> Verdict | None:
        """The remembered verdict on ``pair``, if it was judged before."""
        with self._lock:
            row = self._conn.execute(
                "SELECT approved, score, judge FROM gc_judged WHERE pair = ?", (pair,)
            ).fetchone()
        return None if row is None else Verdict(bool(row[0]), float(row[1]), str(row[2]))

    def changes_since(self, since: int, *, edge: str = "") -> tuple[list[GlobalEntry], int]:
        """Every published entry changed after ``since`` (oldest first) that ``edge`` may see (an
        empty ``edge``: the public ones only), and the current sequence number."""
        with self._lock:
            rows = self._conn.execute(
                _COLUMNS + " WHERE op != 'pending' AND version > ? AND edge IN ('', ?) ORDER BY version",
                (since, edge),
            ).fetchall()
            (seq,) = self._conn.execute("SELECT value FROM gc_meta WHERE name = 'seq'").fetchone()
        return [_to_entry(r) for r in rows], int(seq)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._conn.close()


def _to_entry(row: tuple[str, str, str, str, str, str, str, int, str, str]) -> GlobalEntry:
    key, op, question, answer, family, sys_hash, domain, version, kind, tenant = row
    if op == "delete":
        return GlobalEntry(
            key=key, op="delete", family=family, sys_hash=sys_hash, version=version, kind=kind, tenant=tenant
        )
    return GlobalEntry(
        key=key,
        op=op,
        question=question,
        answer=answer,
        family=family,
        sys_hash=sys_hash,
        domain=domain,
        version=version,
        kind=kind,
        tenant=tenant,
    )
