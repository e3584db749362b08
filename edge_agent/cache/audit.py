"""Audits of served semantic hits: sample them for a reviewer, then raise per-domain thresholds.

Thresholds fitted on paraphrase data describe that data, not this edge's traffic, so every semantic
hit is logged (question, cached question, probability, domain), capped to the newest ``LOG_CAP``.
``edge-agent cache audit sample`` writes a stratified sample as JSONL with ``"correct": null``; a
reviewer fills in true/false; ``edge-agent cache audit apply`` raises each domain's threshold until
the labelled hits above it meet the false-hit target, and stores it here. A running cache applies
stored thresholds at its next lookup, and again whenever it opens. Thresholds are kept per set of
verifier weights (``Verifier.identity``): refitted weights put probabilities on a different scale.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from edge_agent.cache.db import Database
from edge_agent.cache.verifier import Verifier

LOG_CAP = 20_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS sem_hits(
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    tenant TEXT NOT NULL,
    domain TEXT NOT NULL,
    verifier TEXT NOT NULL,
    entry_id INTEGER NOT NULL,
    cached TEXT NOT NULL,
    query TEXT NOT NULL,
    cosine REAL NOT NULL,
    probability REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sem_thresholds(
    verifier TEXT NOT NULL,
    domain TEXT NOT NULL,
    threshold REAL NOT NULL,
    audited INTEGER NOT NULL,
    wrong INTEGER NOT NULL,
    PRIMARY KEY (verifier, domain)
);
"""


class AuditError(ValueError):
    """A labelled file that cannot be applied; nothing was stored."""


@dataclass(frozen=True)
class AuditRow:
    id: int
    domain: str
    verifier: str
    cached: str
    query: str
    probability: float
    correct: bool | None = None


class HitAudit:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._seen_version: int | None = None
        with db.lock:
            db.conn.executescript(SCHEMA)

    def refresh(self, verifier: Verifier) -> bool:
        """Apply stored thresholds if another process (``cache audit apply``) committed since last time.

        ``PRAGMA data_version`` changes only on commits by other connections, so a running agent
        picks up an audit within milliseconds (``Database.foreign_version``), with no restart.
        Returns whether it changed (always on the first call).
        """
        version = self.db.foreign_version()
        if version != self._seen_version:
            self._seen_version = version
            self.load_into(verifier)
            return True
        return False

    def record(
        self, *, ts: float, tenant: str, domain: str, verifier: str, entry_id: int,
        cached: str, query: str, cosine: float, probability: float,
    ) -> None:  # fmt: skip
        with self.db.tx() as conn:
            cur = conn.execute(
                "INSERT INTO sem_hits(ts, tenant, domain, verifier, entry_id, cached, query, cosine,"
                " probability) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (ts, tenant, domain, verifier, entry_id, cached, query, cosine, probability),
            )
            # trimming in batches keeps the common insert a single-row write
            if int(cur.lastrowid) % 1000 == 0:
                conn.execute("DELETE FROM sem_hits WHERE id <= ?", (int(cur.lastrowid) - LOG_CAP,))

    def sample(self, n: int, *, seed: int = 0) -> list[AuditRow]:
        """Up to ``n`` logged hits, the same share from every domain, so a rare one is audited too."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT id, domain, verifier, cached, query, probability FROM sem_hits ORDER BY id"
            ).fetchall()
        by_domain: dict[str, list[AuditRow]] = defaultdict(list)
        for r in rows:
            by_domain[r[1]].append(AuditRow(int(r[0]), r[1], r[2], r[3], r[4], float(r[5])))
        rng = random.Random(seed)
        picked: list[AuditRow] = []
        per_domain = max(1, n // max(len(by_domain), 1))
        for domain in sorted(by_domain):
            hits = by_domain[domain]
            picked += rng.sample(hits, min(per_domain, len(hits)))
        return sorted(picked, key=lambda a: a.id)[:n]

    def apply(
        self, verifier: Verifier, labelled: Sequence[AuditRow], max_false_rate: float
    ) -> dict[str, float]:
        """Refine each audited domain of ``verifier`` and store the result; returns new thresholds."""
        kind = verifier.identity
        usable = [a for a in labelled if a.correct is not None]
        if not usable:
            raise AuditError('no labelled rows: set "correct" to true or false on the audited hits')
        foreign = {a.verifier for a in usable} - {kind}
        if foreign:
            raise AuditError(
                f"rows were scored by verifier weights {sorted(foreign)}; the cache now uses {kind}"
            )
        by_domain: dict[str, list[tuple[float, bool]]] = defaultdict(list)
        for a in usable:
            by_domain[a.domain].append((a.probability, bool(a.correct)))
        out = {d: verifier.refine(d, audit, max_false_rate) for d, audit in by_domain.items()}
        with self.db.tx() as conn:
            for domain, threshold in out.items():
                audit = by_domain[domain]
                conn.execute(
                    "INSERT INTO sem_thresholds VALUES (?, ?, ?, ?, ?) ON CONFLICT(verifier, domain)"
                    " DO UPDATE SET threshold = excluded.threshold, audited = excluded.audited,"
                    " wrong = excluded.wrong",
                    (kind, domain, threshold, len(audit), sum(not ok for _, ok in audit)),
                )
        return out

    def load_into(self, verifier: Verifier) -> dict[str, float]:
        """Apply thresholds stored for these weights; a stricter setting already in force wins."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT domain, threshold FROM sem_thresholds WHERE verifier = ?", (verifier.identity,)
            ).fetchall()
        for domain, threshold in rows:
            verifier.raise_domain(str(domain), float(threshold))
        return {str(d): verifier.threshold(str(d)) for d, _ in rows}


def write_jsonl(rows: Sequence[AuditRow], path: Path) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[AuditRow]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            row = AuditRow(
                int(raw["id"]), str(raw["domain"]), str(raw["verifier"]), str(raw["cached"]),
                str(raw["query"]), float(raw["probability"]), raw.get("correct"),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise AuditError(f"{path}:{n}: not an audit row ({exc!r})") from exc
        if row.correct is not None and not isinstance(row.correct, bool):
            raise AuditError(f'{path}:{n}: "correct" must be true, false or null, not {row.correct!r}')
        out.append(row)
    return out
