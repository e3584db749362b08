"""Weakness report: pass rate per domain × route with a Wilson 95% interval, flagged against
per-domain quality targets.

A cell is ``below`` when even the interval's upper bound misses the target (a confident failure
that should change routing), ``watch`` when the point estimate misses but the interval still
reaches the target (collect more evidence), ``ok`` otherwise. Cells with fewer than ``min_n``
scored answers are ``thin``: too little data to say anything.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from cloud_hub.evaluation.results import ResultRow
from cloud_hub.evaluation.sampling import weighted_wilson

Status = Literal["below", "watch", "ok", "thin"]


@dataclass(frozen=True, slots=True)
class Cell:
    domain: str
    route: str
    n: int
    n_effective: float
    pass_rate: float
    ci_low: float
    ci_high: float
    target: float
    status: Status
    failures: dict[str, int]


@dataclass(frozen=True, slots=True)
class WeaknessReport:
    run_id: str
    cells: list[Cell]
    failure_modes: dict[str, int]
    scorers: dict[str, int]
    targets: dict[str, float] = field(default_factory=dict)

    def flagged(self) -> list[Cell]:
        return [c for c in self.cells if c.status == "below"]

    def cell(self, domain: str, route: str) -> Cell | None:
        return next((c for c in self.cells if c.domain == domain and c.route == route), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_report(
    run_id: str,
    rows: list[ResultRow],
    targets: dict[str, float] | None = None,
    default_target: float = 0.8,
    min_n: int = 10,
) -> WeaknessReport:
    targets = targets or {}
    groups: dict[tuple[str, str], list[ResultRow]] = defaultdict(list)
    for r in rows:
        groups[(r.domain, r.route)].append(r)
    cells: list[Cell] = []
    for (domain, route), members in sorted(groups.items()):
        ci = weighted_wilson([m.passed for m in members], [m.weight for m in members])
        target = targets.get(domain, default_target)
        status: Status
        if len(members) < min_n:
            status = "thin"
        elif ci.high < target:
            status = "below"
        elif ci.rate < target:
            status = "watch"
        else:
            status = "ok"
        failures = Counter(m.failure for m in members if m.failure)
        cells.append(
            Cell(domain, route, len(members), ci.n, ci.rate, ci.low, ci.high, target, status, dict(failures))
        )
    modes = Counter(r.failure for r in rows if r.failure)
    scorers = Counter(r.scorer for r in rows)
    return WeaknessReport(run_id, cells, dict(modes), dict(scorers), dict(targets))


def render_markdown(report: WeaknessReport) -> str:
    lines = [
        f"# Weakness report — run {report.run_id}",
        "",
        "| domain | route | n | pass rate | 95% CI | target | status | top failure |",
        "|---|---|---:|---:|---|---:|---|---|",
    ]
    for c in report.cells:
        top = max(c.failures.items(), key=lambda kv: kv[1])[0] if c.failures else ""
        lines.append(
            f"| {c.domain} | {c.route} | {c.n} | {c.pass_rate:.1%} | [{c.ci_low:.1%}, {c.ci_high:.1%}] "
            f"| {c.target:.0%} | {'**BELOW**' if c.status == 'below' else c.status} | {top} |"
        )
    modes = sorted(report.failure_modes.items(), key=lambda kv: -kv[1])
    lines += ["", "Failure modes: " + (", ".join(f"{k} {v}" for k, v in modes) or "none")]
    lines.append("Scored by: " + ", ".join(f"{k} {v}" for k, v in sorted(report.scorers.items())))
    return "\n".join(lines)
