"""Aliases from the hub's judge, and the edge's memory of which grey pairs it already sent.

An alias is a question the hub's judge found a cached answer right for: it is served when a
request's question has the same form (``question_form``), with no embedding and no judge on the
path. Aliases come only from the global-cache feed and are always filed under one tenant's scope,
so a tenant's lookups can never see another's. ``sem_judged`` remembers every pair sent to the
judge (its state: sent, approved, rejected), so a rejected pair is never sent again and a pending
one not twice; a pair sent to a hub that never answered may go again after ``RESEND_AFTER_S``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from edge_agent.cache.db import Connection
from shared.cache_text import digest, question_form

SCHEMA = """
CREATE TABLE IF NOT EXISTS sem_aliases(
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL,
    qform TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    family TEXT NOT NULL,
    domain TEXT NOT NULL,
    hub_key TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    UNIQUE(scope, qform)
);
CREATE TABLE IF NOT EXISTS sem_judged(
    pair TEXT PRIMARY KEY,
    state TEXT NOT NULL,   -- sent | approved | rejected
    updated REAL NOT NULL
);
"""

RESEND_AFTER_S = 3600.0


@dataclass(frozen=True)
class Alias:
    alias_id: int
    question: str
    answer: str
    family: str


def find(conn: Connection, scope: str, qform: str) -> Alias | None:
    row = conn.execute(
        "SELECT id, question, answer, family FROM sem_aliases WHERE scope = ? AND qform = ?", (scope, qform)
    ).fetchone()
    return None if row is None else Alias(int(row[0]), str(row[1]), str(row[2]), str(row[3]))


def put(
    conn: Connection,
    *,
    scope: str,
    question: str,
    answer: str,
    family: str,
    domain: str,
    hub_key: str,
    now: float,
) -> None:
    """Insert or replace: the hub's latest verdict on a question wins."""
    qform = question_form(question)
    conn.execute(
        "DELETE FROM sem_aliases WHERE hub_key = ? OR (scope = ? AND qform = ?)", (hub_key, scope, qform)
    )
    conn.execute(
        "INSERT INTO sem_aliases(scope, qform, question, answer, family, domain, hub_key, created)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (scope, qform, question, answer, family, domain, hub_key, now),
    )


def delete(conn: Connection, hub_key: str) -> int:
    return int(conn.execute("DELETE FROM sem_aliases WHERE hub_key = ?", (hub_key,)).rowcount)


def pair_id(scope: str, question: str, cached_question: str, answer: str) -> str:
    """Identity of one judged pair: the asking scope, both question forms, the exact answer."""
    answer_hash = hashlib.sha256(answer.encode()).hexdigest()
    return digest("grey", scope, question_form(question), question_form(cached_question), answer_hash)[:40]


def should_send(conn: Connection, pair: str, now: float) -> bool:
    """Never judged, or sent so long ago without a verdict that the hub must have lost it."""
    row = conn.execute("SELECT state, updated FROM sem_judged WHERE pair = ?", (pair,)).fetchone()
    return row is None or (row[0] == "sent" and now - float(row[1]) > RESEND_AFTER_S)


def mark(conn: Connection, pair: str, state: str, now: float) -> None:
    conn.execute(
        "INSERT INTO sem_judged VALUES (?, ?, ?) ON CONFLICT(pair) DO UPDATE"
        " SET state = excluded.state, updated = excluded.updated",
        (pair, state, now),
    )


def forget_sent(conn: Connection, pair: str) -> None:
    """A pair that never reached a judge (queue full, hub down) may be offered again."""
    conn.execute("DELETE FROM sem_judged WHERE pair = ? AND state = 'sent'", (pair,))


def counts(conn: Connection) -> dict[str, int]:
    rows = conn.execute("SELECT state, count(*) FROM sem_judged GROUP BY state").fetchall()
    (aliases,) = conn.execute("SELECT count(*) FROM sem_aliases").fetchone()
    return {**{str(s): int(n) for s, n in rows}, "aliases": int(aliases)}
