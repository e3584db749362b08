"""The semantic cache's tables, and the row writes that keep them in step with each other.

``sem_entries`` holds the question, its float32 embedding and metadata; ``sem_answers`` one
answer (greedy) or a pool (sampled); ``sem_vec`` the vec0 bit index, partitioned by scope. The
writes here run inside the cache's write transaction and touch entry and index together. They
do not change the in-memory ``BitMirror`` themselves: each appends what it did to the
transaction's ``MirrorOps``, which the cache applies only once the transaction has committed, so
a rollback leaves the mirror as it was.
"""

from __future__ import annotations

import hashlib

import numpy as np

from edge_agent.cache import aliases
from edge_agent.cache.base import Vectors
from edge_agent.cache.db import Connection
from edge_agent.cache.exact import add_repeats_column
from edge_agent.cache.forms import FormFilter
from edge_agent.cache.hits import HitLog, write_log
from edge_agent.cache.keys import GLOBAL_TENANT, semantic_scope
from shared.cache_text import GlobalEntry, question_form

# (entry id, scope, vector): a vector to add to the mirror, or ``None`` for an entry to drop
MirrorOps = list[tuple[int, str, Vectors | None]]

# Hub entries live until the hub retracts them; local eviction never touches them.
HUB_EXPIRES = 1e18


def schema(dim: int) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS sem_entries(
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL,
    tenant TEXT NOT NULL,
    family TEXT NOT NULL,
    domain TEXT NOT NULL,
    question TEXT NOT NULL,
    qform TEXT NOT NULL,
    emb BLOB NOT NULL,
    model TEXT NOT NULL,
    origin TEXT NOT NULL,
    hub_key TEXT UNIQUE,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    last_used REAL NOT NULL,
    UNIQUE(scope, qform)
);
CREATE INDEX IF NOT EXISTS sem_lru ON sem_entries(last_used);
CREATE INDEX IF NOT EXISTS sem_expiry ON sem_entries(expires);
CREATE TABLE IF NOT EXISTS sem_answers(
    id INTEGER PRIMARY KEY,
    entry_id INTEGER NOT NULL REFERENCES sem_entries(id) ON DELETE CASCADE,
    answer TEXT NOT NULL,
    answer_hash TEXT NOT NULL,
    served INTEGER NOT NULL DEFAULT 1,
    created REAL NOT NULL,
    repeats INTEGER NOT NULL DEFAULT 0,
    UNIQUE(entry_id, answer_hash)
);
CREATE VIRTUAL TABLE IF NOT EXISTS sem_vec USING vec0(scope TEXT PARTITION KEY, bits BIT[{dim}]);
CREATE TABLE IF NOT EXISTS sem_meta(name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sem_stats(id INTEGER PRIMARY KEY CHECK (id = 0), n INTEGER NOT NULL);
INSERT OR IGNORE INTO sem_stats VALUES (0, 0);
CREATE TRIGGER IF NOT EXISTS sem_ins AFTER INSERT ON sem_entries BEGIN
    UPDATE sem_stats SET n = n + 1 WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS sem_del AFTER DELETE ON sem_entries BEGIN
    UPDATE sem_stats SET n = n - 1 WHERE id = 0;
END;
"""


def prepare(conn: Connection, dim: int) -> None:
    """Create the tables (and the aliases') where missing; refuse a store built at another ``dim``."""
    conn.executescript(schema(dim))
    conn.executescript(aliases.SCHEMA)
    add_repeats_column(conn, "sem_answers")
    row = conn.execute("SELECT value FROM sem_meta WHERE name = 'dim'").fetchone()
    if row is None:
        conn.execute("INSERT INTO sem_meta VALUES ('dim', ?)", (str(dim),))
    elif int(row[0]) != dim:
        raise ValueError(f"cache was built with {row[0]}-d embeddings, the embedder gives {dim}")


def upsert(
    conn: Connection,
    forms: FormFilter,
    ops: MirrorOps,
    scope: str,
    tenant: str,
    family: str,
    domain: str,
    question: str,
    emb: Vectors,
    model: str,
    origin: str,
    hub_key: str | None,
    now: float,
    expires: float,
) -> int:
    qform = question_form(question)
    forms.add_form(scope, qform)
    row = conn.execute("SELECT id FROM sem_entries WHERE scope = ? AND qform = ?", (scope, qform)).fetchone()
    if row is not None:
        conn.execute("UPDATE sem_entries SET expires = ?, last_used = ? WHERE id = ?", (expires, now, row[0]))
        return int(row[0])
    blob = np.ascontiguousarray(emb, dtype=np.float32).tobytes()
    cur = conn.execute(
        "INSERT INTO sem_entries(scope, tenant, family, domain, question, qform, emb, model, origin,"
        " hub_key, created, expires, last_used) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (scope, tenant, family, domain, question, qform, blob, model, origin, hub_key, now, expires, now),
    )
    entry_id = int(cur.lastrowid)
    conn.execute(
        "INSERT INTO sem_vec(rowid, scope, bits) VALUES (?, ?, vec_quantize_binary(?))",
        (entry_id, scope, blob),
    )
    ops.append((entry_id, scope, emb))
    return entry_id


def add_answer(conn: Connection, entry_id: int, answer: str, target: int, now: float) -> None:
    h = hashlib.sha256(answer.encode()).hexdigest()
    if target == 1:
        conn.execute("DELETE FROM sem_answers WHERE entry_id = ? AND answer_hash != ?", (entry_id, h))
    cur = conn.execute(
        "INSERT OR IGNORE INTO sem_answers(entry_id, answer, answer_hash, served, created)"
        " VALUES (?, ?, ?, 1, ?)",
        (entry_id, answer, h, now),
    )
    if not cur.rowcount and target > 1:
        # a repeated text readies the pool, as in the exact cache
        conn.execute(
            "UPDATE sem_answers SET repeats = repeats + 1 WHERE entry_id = ? AND answer_hash = ?",
            (entry_id, h),
        )
    if target > 1:  # with one answer kept, the delete above left no other
        conn.execute(
            "DELETE FROM sem_answers WHERE entry_id = ? AND id NOT IN"
            " (SELECT id FROM sem_answers WHERE entry_id = ? ORDER BY id DESC LIMIT ?)",
            (entry_id, entry_id, target),
        )


def delete_where(conn: Connection, ops: MirrorOps, where: str, args: tuple[object, ...]) -> int:
    ids = [r[0] for r in conn.execute(f"SELECT id FROM sem_entries WHERE {where}", args)]
    for entry_id in ids:
        conn.execute("DELETE FROM sem_vec WHERE rowid = ?", (entry_id,))
        conn.execute("DELETE FROM sem_entries WHERE id = ?", (entry_id,))
    ops.extend((entry_id, "", None) for entry_id in ids)
    return len(ids)


def evict(conn: Connection, ops: MirrorOps, now: float, max_entries: int) -> None:
    delete_where(conn, ops, "id IN (SELECT id FROM sem_entries WHERE expires <= ? LIMIT 64)", (now,))
    (n,) = conn.execute("SELECT n FROM sem_stats WHERE id = 0").fetchone()
    over = n - max_entries
    if over > 0:
        delete_where(
            conn,
            ops,
            "id IN (SELECT id FROM sem_entries WHERE origin = 'local' ORDER BY last_used LIMIT ?)",
            (over,),
        )


def write_hits(conn: Connection, hits: HitLog, touched: HitLog) -> int:
    """The batched hit counts (``edge_agent.cache.hits``): times each answer served, and when
    each entry was last used; returns the entries written."""
    served = "UPDATE sem_answers SET served = served + ? WHERE id = ?"
    write_log(conn, hits, served, lambda h: (h.served, h.row))
    used = "UPDATE sem_entries SET last_used = max(last_used, ?) WHERE id = ?"
    return write_log(conn, touched, used, lambda h: (h.last_used, h.row))


def apply_hub(
    conn: Connection,
    forms: FormFilter,
    ops: MirrorOps,
    fresh: list[GlobalEntry],
    puts: list[GlobalEntry],
    embs: Vectors | None,
    now: float,
) -> None:
    """The hub's changes ``fresh``: each first drops what its key held; then its aliases are filed
    and its shared answers ``puts`` (with their questions' vectors ``embs``, in order) stored."""
    for e in fresh:
        delete_where(conn, ops, "hub_key = ?", (e.key,))
        aliases.delete(conn, e.key)
    for e in fresh:
        if e.op == "put" and e.kind == "alias":  # filed under its tenant, never the shared scope
            scope = semantic_scope(e.tenant, e.family, e.sys_hash)
            forms.add_form(scope, question_form(e.question))
            aliases.put(
                conn, scope=scope, question=e.question,
                answer=e.answer, family=e.family, domain=e.domain, hub_key=e.key, now=now,
            )  # fmt: skip
    for i, e in enumerate(puts):
        assert embs is not None
        entry_id = upsert(
            conn,
            forms,
            ops,
            semantic_scope(GLOBAL_TENANT, e.family, e.sys_hash),
            GLOBAL_TENANT,
            e.family,
            e.domain,
            e.question,
            embs[i],
            e.family,
            "hub",
            e.key,
            now,
            HUB_EXPIRES,
        )
        add_answer(conn, entry_id, e.answer, 1, now)
