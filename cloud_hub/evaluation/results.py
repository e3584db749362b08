"""Evaluation results live beside the events in the hub's SQLite file: runs, per-event verdicts
and preference pairs, so reports and exports can be rebuilt for any past run.

Exports for the training team are JSONL: failures (with the failure mode and whatever content the
edge captured) and preference pairs (prompt, chosen, rejected). One JSON object per line, UTF-8,
written to a temporary file and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_hub.telemetry.store import TelemetryStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS eval_runs (
    run_id TEXT PRIMARY KEY, started REAL NOT NULL, finished REAL, params TEXT NOT NULL, summary TEXT
);
CREATE TABLE IF NOT EXISTS eval_results (
    run_id TEXT NOT NULL, edge_id TEXT NOT NULL, event_id TEXT NOT NULL,
    domain TEXT NOT NULL, route TEXT NOT NULL, model TEXT NOT NULL, weight REAL NOT NULL,
    scorer TEXT NOT NULL, passed INTEGER NOT NULL, score REAL NOT NULL, failure TEXT, detail TEXT,
    canary INTEGER NOT NULL, policy_version TEXT NOT NULL, local_confidence REAL,
    PRIMARY KEY (run_id, edge_id, event_id)
);
CREATE TABLE IF NOT EXISTS eval_pairs (
    run_id TEXT NOT NULL, edge_id TEXT NOT NULL, event_id TEXT NOT NULL, source TEXT NOT NULL,
    domain TEXT NOT NULL, route TEXT NOT NULL, prompt TEXT NOT NULL, chosen TEXT NOT NULL,
    rejected TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class ResultRow:
    run_id: str
    edge_id: str
    event_id: str
    domain: str
    route: str
    model: str
    weight: float
    scorer: str
    passed: bool
    score: float
    failure: str | None
    detail: str
    canary: bool
    policy_version: str
    local_confidence: float | None


@dataclass(frozen=True, slots=True)
class PairRow:
    run_id: str
    edge_id: str
    event_id: str
    source: str  # "pairwise_judge" or "reference"
    domain: str
    route: str
    prompt: str
    chosen: str
    rejected: str


class ResultStore:
    def __init__(self, store: TelemetryStore) -> None:
        self.store = store
        with store.transaction() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    def start_run(self, run_id: str, started: float, params: dict[str, Any]) -> None:
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO eval_runs VALUES (?, ?, NULL, ?, NULL)", (run_id, started, json.dumps(params))
            )

    def finish_run(self, run_id: str, finished: float, summary: dict[str, Any]) -> None:
        with self.store.transaction() as db:
            db.execute(
                "UPDATE eval_runs SET finished = ?, summary = ? WHERE run_id = ?",
                (finished, json.dumps(summary), run_id),
            )

    def add(self, rows: list[ResultRow], pairs: list[PairRow]) -> None:
        with self.store.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO eval_results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        r.run_id, r.edge_id, r.event_id, r.domain, r.route, r.model, r.weight, r.scorer,
                        int(r.passed), r.score, r.failure, r.detail, int(r.canary), r.policy_version,
                        r.local_confidence,
                    )
                    for r in rows
                ],
            )  # fmt: skip
            db.executemany(
                "INSERT INTO eval_pairs VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        p.run_id,
                        p.edge_id,
                        p.event_id,
                        p.source,
                        p.domain,
                        p.route,
                        p.prompt,
                        p.chosen,
                        p.rejected,
                    )
                    for p in pairs
                ],
            )

    def latest_run(self) -> str | None:
        with self.store.transaction() as db:
            row = db.execute(
                "SELECT run_id FROM eval_runs WHERE finished IS NOT NULL ORDER BY finished DESC LIMIT 1"
            ).fetchone()
        return str(row[0]) if row else None

    def run_info(self, run_id: str) -> dict[str, Any] | None:
        with self.store.transaction() as db:
            row = db.execute(
                "SELECT started, finished, params, summary FROM eval_runs WHERE run_id = ?", (run_id,)
            )
            found = row.fetchone()
        if found is None:
            return None
        started, finished, params, summary = found
        return {
            "run_id": run_id,
            "started": started,
            "finished": finished,
            "params": json.loads(params),
            "summary": json.loads(summary) if summary else None,
        }

    def results(self, run_id: str) -> list[ResultRow]:
        with self.store.transaction() as db:
            rows = db.execute(
                "SELECT * FROM eval_results WHERE run_id = ? ORDER BY edge_id, event_id", (run_id,)
            )
            fetched = rows.fetchall()
        return [
            ResultRow(
                r[0], r[1], r[2], r[3], r[4], r[5], float(r[6]), r[7], bool(r[8]), float(r[9]), r[10],
                r[11] or "", bool(r[12]), r[13], r[14],
            )
            for r in fetched
        ]  # fmt: skip

    def pairs(self, run_id: str) -> list[PairRow]:
        with self.store.transaction() as db:
            fetched = db.execute("SELECT * FROM eval_pairs WHERE run_id = ?", (run_id,)).fetchall()
        return [PairRow(*r) for r in fetched]


# --- export --------------------------------------------------------------------------------------

EXPORT_VERSION = 1


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return len(records)


def export_run(store: TelemetryStore, results: ResultStore, run_id: str, out_dir: Path) -> dict[str, int]:
    """Writes ``failures.jsonl`` and ``preferences.jsonl`` under ``out_dir``; returns line counts."""
    events = {(edge, ev.event_id): ev for edge, ev in store.events()}
    failures: list[dict[str, Any]] = []
    for r in results.results(run_id):
        if r.passed:
            continue
        ev = events.get((r.edge_id, r.event_id))
        failures.append(
            {
                "version": EXPORT_VERSION,
                "run_id": run_id,
                "event_id": r.event_id,
                "edge_id": r.edge_id,
                "domain": r.domain,
                "route": r.route,
                "model": r.model,
                "failure_mode": r.failure,
                "scorer": r.scorer,
                "score": r.score,
                "detail": r.detail,
                "weight": r.weight,
                "prompt": ev.prompt if ev else None,
                "completion": ev.completion if ev else None,
                "reference": ev.reference if ev else None,
                "local_confidence": r.local_confidence,
            }
        )
    preferences = [
        {
            "version": EXPORT_VERSION,
            "run_id": run_id,
            "event_id": p.event_id,
            "source": p.source,
            "domain": p.domain,
            "route": p.route,
            "prompt": p.prompt,
            "chosen": p.chosen,
            "rejected": p.rejected,
        }
        for p in results.pairs(run_id)
    ]
    return {
        "failures": _write_jsonl(out_dir / "failures.jsonl", failures),
        "preferences": _write_jsonl(out_dir / "preferences.jsonl", preferences),
    }
