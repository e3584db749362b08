"""Verified semantic cache: a bit index partitioned by tenant scope, float rescoring, guards.

Layout: ``sem_entries`` holds the question, its float32 embedding and metadata; ``sem_answers``
holds one answer (greedy) or a pool (sampled); ``sem_vec`` is a vec0 table with a ``bit[dim]``
column partitioned by scope (``edge_agent.cache.semantic_rows`` writes them). Every write touches
the three tables in one transaction, so a crash cannot leave the index out of step with the rows.
Searches scan ``BitMirror``, an in-memory copy of ``sem_vec`` kept in step after each commit, so
a query only ever scans the asking tenant's partition (and the hub's shared one). The Hamming
scan picks ``rescore`` candidates; exact cosine on their stored floats ranks them, and only then
do the guards and the verifier decide.

``lookup_form`` is the part that needs no vector: a stored question of the same form (case and
trailing punctuation aside), or an alias the hub's judge approved for this tenant
(``edge_agent.cache.aliases``). At the shipped safe point that is everything the stage may serve,
so the request path embeds nothing there; the full ``get`` runs for domains relaxed to serve
paraphrases, and without serving (``serve=False``) off the request path to find the grey-zone
candidate worth sending to the hub's judge.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from edge_agent.cache import aliases
from edge_agent.cache.audit import HitAudit
from edge_agent.cache.base import CachedAnswer, Embedder, Lookup, Vectors
from edge_agent.cache.db import Connection, Database, OperationalError
from edge_agent.cache.exact import pool_ready, pool_target
from edge_agent.cache.forms import FormFilter
from edge_agent.cache.hits import HitLog, flush
from edge_agent.cache.keys import CacheRequest
from edge_agent.cache.mirror import BitMirror
from edge_agent.cache.semantic_rows import (
    MirrorOps,
    add_answer,
    apply_hub,
    delete_where,
    evict,
    prepare,
    upsert,
    write_hits,
)
from edge_agent.cache.verifier import Decision, Verdict, Verifier
from shared.cache_text import GlobalEntry, question_form
from shared.config import CacheSettings
from shared.taxonomy import Route
from shared.wire import Scalar

log = logging.getLogger(__name__)


# off the request path, the nearest few candidates are enough to find one worth a judge's time
GREY_LOOKS = 3
GREY_RESCORE = 16


@dataclass(frozen=True)
class Candidate:
    entry_id: int
    cosine: float
    question: str
    domain: str
    model: str
    origin: str


class SemanticCache:
    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        verifier: Verifier,
        settings: CacheSettings | None = None,
        *,
        rescore: int = 100,
    ) -> None:
        self.db = db
        self.embedder = embedder
        self.verifier = verifier
        self.settings = settings or CacheSettings()
        self.rescore = rescore
        self.dim = embedder.dim
        self.hits = HitLog()  # by answer row: times served
        self.touched = HitLog()  # by entry: last used
        self.audit = HitAudit(db)
        self.audit.refresh(verifier)
        with self.db.lock:
            prepare(self.db.conn, self.dim)
            self.mirror = BitMirror(self.dim)
            self.mirror.load(self.db.conn)
            self.forms = FormFilter()
            self.forms.load(self.db.conn)
        # mirror changes of the open write transaction, in order, applied once it has committed
        self._ops: MirrorOps = []

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.db.lock:
            self._ops = []
            try:
                with self.db.tx() as conn:
                    yield conn
                for entry_id, scope, emb in self._ops:
                    if emb is None:
                        self.mirror.remove([entry_id])
                    else:
                        self.mirror.add(entry_id, scope, emb)
            finally:
                self._ops = []

    # --- lookup ---------------------------------------------------------------------------------

    def lookup_form(self, req: CacheRequest) -> Lookup:
        """A hit without embedding: the same question stored (this tenant's, then the hub's), else
        this tenant's alias of it. A miss says whether the domain could still match by meaning."""
        t0 = time.perf_counter()
        elig = req.eligibility
        if not elig.ok:
            return Lookup(None, f"ineligible:{elig.reason}", _ms(t0))
        if self.audit.refresh(self.verifier):  # an audit may have moved this domain's point
            with self.db.read() as conn:  # ... and another process may have written forms
                self.forms.load(conn)
        qform = question_form(elig.question)
        own, shared = req.own_scope, req.shared_scope
        point: dict[str, Scalar] = {"operating_point": self.verifier.point(req.domain)}
        if not (self.forms.may_hold_form(own, qform) or self.forms.may_hold_form(shared, qform)):
            return Lookup(None, self._form_miss(req.domain), _ms(t0), point)  # in neither table
        with self.db.snapshot() as conn:
            row = conn.execute(
                "SELECT id, question, domain, model, origin FROM sem_entries"
                " WHERE scope IN (?, ?) AND qform = ? AND expires > ? ORDER BY scope = ? DESC LIMIT 1",
                (own, shared, qform, req.now, own),
            ).fetchone()
            alias = aliases.find(conn, own, qform)
        if row is not None:
            cand = Candidate(int(row[0]), 1.0, str(row[1]), str(row[2]), str(row[3]), str(row[4]))
            answer = self._pick_answer(cand, req, req.now)
            if answer is not None:
                hit = CachedAnswer(
                    cand.entry_id, answer, cand.model, Route.SEMANTIC_CACHE, verifier=1.0,
                    origin=cand.origin, matched=cand.question,
                )  # fmt: skip
                return Lookup(hit, "identical", _ms(t0), point)
        # the question's own pool may still be filling: the judged answer is one to serve meanwhile
        if alias is not None:
            hit = CachedAnswer(
                alias.alias_id, alias.answer, alias.family, Route.SEMANTIC_CACHE,
                origin="alias", matched=alias.question,
            )  # fmt: skip
            return Lookup(hit, "alias", _ms(t0), point)
        return Lookup(None, self._form_miss(req.domain), _ms(t0), point)

    def _form_miss(self, domain: str) -> str:
        return "no_identical_form" if self.verifier.serves_paraphrases(domain) else "identical_only"

    def get(self, req: CacheRequest, query: Vectors | None = None, *, serve: bool = True) -> Lookup:
        """Match by meaning. ``query``: the question's vector when already known. ``serve`` off:
        decide only (no answer picked, nothing logged), to find a grey-zone candidate."""
        t0 = time.perf_counter()
        elig = req.eligibility
        if not elig.ok:
            return Lookup(None, f"ineligible:{elig.reason}", _ms(t0))
        if serve:  # off the request path the point its lookup refreshed a moment ago will do
            self.audit.refresh(self.verifier)
        if query is None:
            query = self.embedder.embed([elig.question])[0]
        scopes = [req.own_scope, req.shared_scope]
        # off the request path only the nearest few are looked at: fewer float rows to read
        rescore = self.rescore if serve else GREY_RESCORE
        candidates = self.search(scopes, query, k=10, now=req.now, rescore=rescore)
        found, best = self._decide(candidates, elig.question, req.domain, serve)
        if found is None:
            reason = "no_verified_match" if candidates else "no_candidate"
            return Lookup(None, reason, _ms(t0), best, query)
        cand, decision = found
        answer = self._pick_answer(cand, req, req.now)
        if answer is None:
            return Lookup(None, "pool_filling", _ms(t0), best, query)
        if self.settings.audit_log:
            self._log_hit(req, cand, elig.question, decision.probability)
        hit = CachedAnswer(
            entry_id=cand.entry_id,
            text=answer,
            model=cand.model,
            stage=Route.SEMANTIC_CACHE,
            similarity=cand.cosine,
            verifier=decision.probability,
            origin=cand.origin,
            matched=cand.question,
        )
        detail: dict[str, Scalar] = {"candidates": len(candidates), "operating_point": decision.point}
        return Lookup(hit, "verified", _ms(t0), detail, query)

    def _decide(
        self, candidates: list[Candidate], question: str, domain: str, serve: bool
    ) -> tuple[tuple[Candidate, Decision] | None, dict[str, Scalar]]:
        """The first accepted candidate (none when not ``serve``), and what the trace says of the
        best one and of the first grey one."""
        best: dict[str, Scalar] = {}
        for rank, cand in enumerate(candidates):
            if not serve and rank >= GREY_LOOKS:
                break
            decision = self.verifier.decide(cand.cosine, cand.question, question, domain)
            if not best:
                best = {"best_cosine": round(cand.cosine, 4), "best_reason": decision.reason}
                best["best_entry"] = cand.entry_id
            if decision.verdict is Verdict.GREY and "grey_entry" not in best:
                # not served: the candidate a stronger judge could still approve
                best.update(grey_entry=cand.entry_id, grey_probability=round(decision.probability, 4))
                best["grey_cosine"] = round(cand.cosine, 4)
                if not serve:
                    break
            if decision.accepted and serve:
                return (cand, decision), best
        return None, best

    def _log_hit(self, req: CacheRequest, cand: Candidate, query: str, prob: float) -> None:
        try:
            self.audit.record(
                ts=req.now, tenant=req.tenant_scope, domain=req.domain,
                verifier=self.verifier.identity, entry_id=cand.entry_id,
                cached=cand.question, query=query, cosine=cand.cosine, probability=prob,
            )  # fmt: skip
        except OperationalError:
            # the answer is already verified; an audit row lost to a busy disk is not worth a miss
            log.warning("semantic hit not logged for audit", exc_info=True)

    def search(
        self, scopes: list[str], query: Vectors, *, k: int, now: float, rescore: int | None = None
    ) -> list[Candidate]:
        """Top-``k`` live entries by exact cosine among the bit-prefiltered candidates of ``scopes``."""
        q = np.ascontiguousarray(query, dtype=np.float32)
        ids = self.mirror.search(scopes, q, self.rescore if rescore is None else rescore)
        if not ids:
            return []
        with self.db.snapshot() as conn:
            rows = conn.execute(
                "SELECT id, emb, question, domain, model, origin FROM sem_entries"
                f" WHERE id IN ({','.join('?' * len(ids))}) AND expires > ?",
                (*ids, now),
            ).fetchall()
        if not rows:
            return []
        mat = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
        sims = mat @ q
        order = np.argsort(-sims, kind="stable")[:k]
        return [
            Candidate(rows[i][0], float(sims[i]), rows[i][2], rows[i][3], rows[i][4], rows[i][5])
            for i in order
        ]

    def judge_material(self, entry_id: int, now: float) -> tuple[str, str, str] | None:
        """(question, answer, domain) of a live entry, for the hub's judge: the answer it would
        serve next. ``None`` when the entry is gone, or is a sampled pool still filling."""
        with self.db.snapshot() as conn:
            entry = conn.execute(
                "SELECT question, domain FROM sem_entries WHERE id = ? AND expires > ?", (entry_id, now)
            ).fetchone()
            answer = conn.execute(
                "SELECT answer FROM sem_answers WHERE entry_id = ? ORDER BY served, id LIMIT 1", (entry_id,)
            ).fetchone()
        if entry is None or answer is None:
            return None
        return str(entry[0]), str(answer[0]), str(entry[1])

    def _pick_answer(self, cand: Candidate, req: CacheRequest, now: float) -> str | None:
        entry_id = cand.entry_id
        # the hub shares one vetted answer per question; only local entries grow a pool
        target = 1 if cand.origin == "hub" else pool_target(req, self.settings.pool_size)
        with self.db.snapshot() as conn:
            rows = conn.execute(
                "SELECT id, answer, repeats, served FROM sem_answers WHERE entry_id = ? LIMIT 64", (entry_id,)
            ).fetchall()
        # least served first, unwritten hits included (``edge_agent.cache.hits``: no write per hit)
        rows.sort(key=lambda r: (r[3] + self.hits.served(r[0]), r[0]))
        rows = rows[: target + 1]
        if not pool_ready(len(rows), any(r[2] for r in rows), target):
            return None
        self.hits.record(rows[0][0], now)
        self.touched.record(entry_id, now)
        if self.hits.due:
            self.flush_hits(wait=False)
        return str(rows[0][1])

    def flush_hits(self, *, wait: bool = True) -> int:
        """Write the hits noted since the last flush (``ExactCache.flush_hits``)."""
        return flush(self.db, self._write_hits, wait=wait) if len(self.touched) else 0

    def _write_hits(self, conn: Connection) -> int:
        return write_hits(conn, self.hits, self.touched)

    # --- store ----------------------------------------------------------------------------------

    def put(self, req: CacheRequest, answer: str, model: str, embedding: Vectors | None = None) -> int | None:
        """Store an answer for an eligible request; returns the entry id (None when ineligible).

        ``embedding`` is the question's vector from this request's own ``get``, when it ran."""
        elig = req.eligibility
        if not elig.ok or not answer.strip():
            return None
        emb = embedding if embedding is not None else self.embedder.embed([elig.question])[0]
        return self.put_many([(req, answer, model, emb)])[0]

    def put_many(self, items: Sequence[tuple[CacheRequest, str, str, Vectors]]) -> list[int | None]:
        """``put`` of each (request, answer, model, the question's vector) in one transaction, so
        they share one commit and the pages it writes. All or nothing."""
        ids: list[int | None] = []
        with self._write() as conn:
            now = 0.0
            for req, answer, model, emb in items:
                elig = req.eligibility
                if not elig.ok or not answer.strip():
                    ids.append(None)
                    continue
                entry_id = upsert(
                    conn,
                    self.forms,
                    self._ops,
                    req.own_scope,
                    req.tenant_scope,
                    req.family,
                    req.domain,
                    elig.question,
                    emb,
                    model,
                    "local",
                    None,
                    req.now,
                    req.now + self.settings.semantic_ttl_s,
                )
                add_answer(conn, entry_id, answer, pool_target(req, self.settings.pool_size), req.now)
                ids.append(entry_id)
                now = max(now, req.now)
            if now:
                self._write_hits(conn)  # eviction must see which entries were used lately
                evict(conn, self._ops, now, self.settings.max_entries)
        return ids

    def hub_seq(self) -> int:
        """The last hub sequence number applied to this store (0 before any sync)."""
        with self.db.read() as conn:
            row = conn.execute("SELECT value FROM sem_meta WHERE name = 'hub_seq'").fetchone()
        return int(row[0]) if row else 0

    def apply_global(self, entries: list[GlobalEntry], seq: int, now: float) -> int:
        """Apply hub changes and record ``seq`` in the same transaction; returns entries applied.

        An entry at or below the stored version is skipped, so replaying a delta is harmless.
        """
        current = self.hub_seq()
        fresh = [e for e in entries if e.version > current]
        puts = [e for e in fresh if e.op == "put" and e.kind == "answer"]
        embs = self.embedder.embed([e.question for e in puts]) if puts else None
        with self._write() as conn:
            apply_hub(conn, self.forms, self._ops, fresh, puts, embs, now)
            conn.execute(
                "INSERT INTO sem_meta VALUES ('hub_seq', ?)"
                " ON CONFLICT(name) DO UPDATE SET value = excluded.value"
                " WHERE CAST(excluded.value AS INTEGER) > CAST(sem_meta.value AS INTEGER)",
                (str(max(seq, current)),),
            )
        return len(fresh)

    def _delete_where(self, conn: Connection, where: str, args: tuple[object, ...]) -> int:
        return delete_where(conn, self._ops, where, args)

    def count(self) -> tuple[int, int]:
        """(rows in ``sem_entries``, rows in the vector index): equal unless something is broken."""
        with self.db.read() as conn:
            (n,) = conn.execute("SELECT count(*) FROM sem_entries").fetchone()
            (v,) = conn.execute("SELECT count(*) FROM sem_vec").fetchone()
        return int(n), int(v)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0
