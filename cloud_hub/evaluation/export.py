"""JSONL exports for the training team: failures (with the failure mode and whatever content the
edge captured) and preference pairs (prompt, chosen, rejected). One JSON object per line, UTF-8,
written to a temporary file and renamed, so a reader never sees half a file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cloud_hub.evaluation.results import ResultStore
from cloud_hub.telemetry.store import TelemetryStore

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
