"""Closed loop: evaluation results propose a recalibrated edge confidence threshold; the proposal
serves a canary share of traffic and is promoted only if quality holds, rolled back otherwise.

The threshold is the edge's ``confidence_threshold``: at or above it the edge answers locally,
below it the request escalates. Lower is cheaper. ``propose_threshold`` picks the lowest observed
confidence at which the locally answered set still meets the target with its Wilson lower bound.
``CanaryController`` keeps the policy state in a JSON file (atomic replace) under the hub home;
edges learn their arm from ``assign`` and tag events with ``policy_version`` and ``canary``, which
is how ``decide`` compares the arms.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from cloud_hub.evaluation.results import ResultRow
from cloud_hub.evaluation.sampling import RateCI, difference_ci, weighted_wilson, wilson

Decision = Literal["promote", "rollback", "continue"]


@dataclass(frozen=True, slots=True)
class ThresholdProposal:
    current: float
    proposed: float
    n: int
    pass_rate_at_proposed: float
    ci_low: float
    reason: str


def propose_threshold(
    rows: list[ResultRow], current: float, target: float, route: str = "edge_local", step: float = 0.05
) -> ThresholdProposal:
    """From verdicts on locally answered requests with their confidence, the cheapest safe threshold."""
    points = sorted(
        ((r.local_confidence, r.passed) for r in rows if r.route == route and r.local_confidence is not None),
        reverse=True,
    )
    if not points:
        return ThresholdProposal(current, current, 0, 0.0, 0.0, "no scored local answers")
    best: tuple[float, RateCI] | None = None
    passes = 0
    for i, (confidence, ok) in enumerate(points, start=1):
        passes += ok
        ci = wilson(passes, i)
        if ci.low >= target:
            best = (confidence, ci)
    if best is None:
        # even the most confident answers miss the target: escalate more
        proposed = min(1.0, round(current + step, 4))
        overall = wilson(passes, len(points))
        return ThresholdProposal(
            current, proposed, len(points), overall.rate, overall.low, "below target: raise"
        )
    confidence, ci = best
    if confidence <= current and points[-1][0] >= current - 1e-9 and ci.low >= target:
        # every observed local answer is safe; data below the current threshold only comes from a
        # canary, so explore one step down
        return ThresholdProposal(
            current, max(0.0, round(current - step, 4)), len(points), ci.rate, ci.low, "explore"
        )
    return ThresholdProposal(current, round(confidence, 4), len(points), ci.rate, ci.low, "calibrated")


@dataclass(slots=True)
class PolicyState:
    version: str = "v0"
    threshold: float = 0.75
    canary_version: str | None = None
    canary_threshold: float | None = None
    canary_share: float = 0.0
    canary_started: float | None = None
    history: list[dict[str, object]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Assignment:
    version: str
    threshold: float
    canary: bool


class CanaryController:
    def __init__(self, path: Path, initial_threshold: float = 0.75) -> None:
        self.path = path
        if path.exists():
            self.state = PolicyState(**json.loads(path.read_text()))
        else:
            self.state = PolicyState(threshold=initial_threshold)

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self.state), indent=2))
        os.replace(tmp, self.path)  # a crash leaves the old or the new policy, never half of one

    def start(self, threshold: float, share: float = 0.1) -> str:
        if self.state.canary_version is not None:
            raise RuntimeError(f"canary {self.state.canary_version} is still running")
        if not 0.0 < share < 1.0:
            raise ValueError("canary share must be in (0, 1)")
        version = f"v{len(self.state.history) + 1}"
        self.state.canary_version, self.state.canary_threshold = version, threshold
        self.state.canary_share, self.state.canary_started = share, time.time()
        self._save()
        return version

    def assign(self, key: str) -> Assignment:
        """Deterministic by request (or tenant) key, so a conversation stays in one arm."""
        s = self.state
        if s.canary_version is not None and s.canary_threshold is not None:
            bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
            if bucket < s.canary_share:
                return Assignment(s.canary_version, s.canary_threshold, True)
        return Assignment(s.version, s.threshold, False)

    def decide(
        self, rows: list[ResultRow], min_n: int = 30, max_n: int = 2000, margin: float = 0.02
    ) -> tuple[Decision, dict[str, float]]:
        """Non-inferiority: promote when the difference's lower bound clears ``-margin``; roll back
        when the canary is significantly worse, or when ``max_n`` answers could not show it holds."""
        s = self.state
        if s.canary_version is None:
            raise RuntimeError("no canary is running")
        canary = [r for r in rows if r.policy_version == s.canary_version]
        control = [r for r in rows if r.policy_version == s.version and not r.canary]
        a = weighted_wilson([r.passed for r in canary], [r.weight for r in canary])
        b = weighted_wilson([r.passed for r in control], [r.weight for r in control])
        lo, hi = difference_ci(a, b)
        stats = {"canary_rate": a.rate, "control_rate": b.rate, "diff_low": lo, "diff_high": hi,
                 "canary_n": float(len(canary)), "control_n": float(len(control))}  # fmt: skip
        decision: Decision
        if len(canary) < min_n or len(control) < min_n:
            decision = "continue"
        elif hi < 0.0:
            decision = "rollback"
        elif lo > -margin:
            decision = "promote"
        else:
            decision = "rollback" if len(canary) >= max_n else "continue"
        if decision != "continue":
            self._conclude(decision, stats)
        return decision, stats

    def finish(self, decision: Literal["promote", "rollback"]) -> None:
        """An operator's decision, without waiting for ``decide`` (``cloud-hub canary``)."""
        if self.state.canary_version is None:
            raise RuntimeError("no canary is running")
        self._conclude(decision, {"manual": 1.0})

    def _conclude(self, decision: Decision, stats: dict[str, float]) -> None:
        s = self.state
        s.history.append(
            {"version": s.canary_version, "threshold": s.canary_threshold, "decision": decision,
             "at": time.time(), **stats}
        )  # fmt: skip
        if decision == "promote" and s.canary_version is not None and s.canary_threshold is not None:
            s.version, s.threshold = s.canary_version, s.canary_threshold
        s.canary_version, s.canary_threshold, s.canary_share, s.canary_started = None, None, 0.0, None
        self._save()
