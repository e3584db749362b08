"""Quality figures of the dashboard: the latest evaluation run and the canary.

Per-domain quality and the weakness flags are the latest run's weakness report
(``cloud_hub.evaluation.report.build_report``, Wilson 95% intervals on the sample's weights); the
per-domain roll-up is the same report built over all routes of a domain. The canary panel reads
the controller's policy file without deciding anything (``CanaryController.decide`` concludes a
canary, which is ``cloud-hub eval run --recalibrate``'s job) and shows both arms' live traffic
and the latest run's pass rates, the comparison ``decide`` makes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from cloud_hub.evaluation.canary import CanaryController
from cloud_hub.evaluation.report import Cell, build_report
from cloud_hub.evaluation.results import ResultRow, ResultStore
from cloud_hub.evaluation.sampling import difference_ci, weighted_wilson
from cloud_hub.telemetry.aggregates import aggregate
from cloud_hub.telemetry.store import TelemetryStore

_ALL_ROUTES = "*"
_STATUS_ORDER = {"below": 0, "watch": 1, "thin": 2, "ok": 3}


def _targets(home: Path, run_id: str) -> dict[str, float]:
    """Per-domain targets of a run: kept in its report.json (the run's stored params omit them)."""
    path = home / "eval" / run_id / "report.json"
    try:
        targets = json.loads(path.read_text()).get("targets") or {}
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in targets.items()}


def _cell(c: Cell) -> dict[str, Any]:
    top = max(c.failures.items(), key=lambda kv: kv[1])[0] if c.failures else None
    return {
        "domain": c.domain,
        "route": c.route,
        "n": c.n,
        "n_effective": c.n_effective,
        "pass_rate": c.pass_rate,
        "ci_low": c.ci_low,
        "ci_high": c.ci_high,
        "target": c.target,
        "status": c.status,
        "top_failure": top,
    }


def latest_quality(store: TelemetryStore, home: Path) -> tuple[dict[str, Any], list[ResultRow]]:
    """(quality section, the latest run's verdicts) — empty when no run has finished."""
    results = ResultStore(store)
    run_id = results.latest_run()
    info = results.run_info(run_id) if run_id is not None else None
    if run_id is None or info is None:
        return {"run": None, "domains": [], "cells": [], "flags": [], "failure_modes": {}}, []
    rows = results.results(run_id)
    params = info.get("params") or {}
    targets = _targets(home, run_id)
    default, min_n = float(params.get("default_target", 0.8)), int(params.get("min_n", 10))
    report = build_report(run_id, rows, targets, default, min_n)
    merged = [dataclasses.replace(r, route=_ALL_ROUTES) for r in rows]
    domains = build_report(run_id, merged, targets, default, min_n).cells
    flags = sorted(
        (c for c in report.cells if c.status in ("below", "watch")),
        key=lambda c: (_STATUS_ORDER[c.status], c.ci_high, c.domain, c.route),
    )
    summary = info.get("summary") or {}
    section = {
        "run": {
            "run_id": run_id,
            "started": info.get("started"),
            "finished": info.get("finished"),
            "scored": len(rows),
            "pass_rate": summary.get("pass_rate"),
            "default_target": default,
            "min_n": min_n,
        },
        "domains": [{k: v for k, v in _cell(c).items() if k != "route"} for c in domains],
        "cells": [_cell(c) for c in report.cells],
        "flags": [_cell(c) for c in flags],
        "failure_modes": report.failure_modes,
    }
    return section, rows


def _arm(rows: list[ResultRow]) -> dict[str, Any]:
    ci = weighted_wilson([r.passed for r in rows], [r.weight for r in rows])
    return {"scored": len(rows), "pass_rate": ci.rate if rows else None, "ci_low": ci.low, "ci_high": ci.high}


def canary(
    store: TelemetryStore, home: Path, rows: list[ResultRow], since: float, until: float
) -> dict[str, Any]:
    state = CanaryController(home / "policy.json").state
    traffic = {
        (str(r.key["policy"]), bool(r.key["canary"])): r
        for r in aggregate(store, by=("policy", "canary"), since=since, until=until)
    }

    def live(version: str | None, is_canary: bool) -> dict[str, Any]:
        r = traffic.get((version or "", is_canary))
        if r is None:
            return {"requests": 0, "escalation_rate": None, "fallback_rate": None, "regeneration_rate": None}
        return {
            "requests": r.requests,
            "escalation_rate": r.escalation_rate,
            "fallback_rate": r.fallback_rate,
            "regeneration_rate": r.regeneration_rate,
        }

    out: dict[str, Any] = {
        "running": state.canary_version is not None,
        "version": state.version,
        "threshold": state.threshold,
        "canary_version": state.canary_version,
        "canary_threshold": state.canary_threshold,
        "canary_share": state.canary_share,
        "canary_started": state.canary_started,
        "control": live(state.version, False),
        "canary": live(state.canary_version, True) if state.canary_version else None,
        "history": state.history[-10:],
    }
    if state.canary_version is not None:
        # the arms exactly as ``decide`` splits them
        arm_a = [r for r in rows if r.policy_version == state.canary_version]
        arm_b = [r for r in rows if r.policy_version == state.version and not r.canary]
        out["canary"]["eval"], out["control"]["eval"] = _arm(arm_a), _arm(arm_b)
        if arm_a and arm_b:
            a = weighted_wilson([r.passed for r in arm_a], [r.weight for r in arm_a])
            b = weighted_wilson([r.passed for r in arm_b], [r.weight for r in arm_b])
            out["difference_ci"] = list(difference_ci(a, b))
    return out
