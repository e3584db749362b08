"""The routing decision: which route answers this request, and why.

Inputs are the per-route success probabilities (from the heads, possibly refined by the local
model's confidence), each route's cost estimate, and the quality target for the request's tenant
and domain. Two rules, both explainable candidate by candidate:

* **calibrated** (a ``ThresholdTable`` is loaded): maximise ``p - lam * cost / max_cost`` with the
  ``lam`` calibrated for the target on recorded outcomes — the least-cost rule for N tiers;
* **cheapest adequate** (no table yet): the cheapest route whose predicted success is at least
  ``target`` times the best route's.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from shared.config import CostModel, TenantConfig
from shared.routing.calibration import ThresholdTable
from shared.taxonomy import Route
from shared.wire import Classification, TraceStep

# assumed output length when a request sets no max_tokens and nothing better is known
DEFAULT_COMPLETION_TOKENS = 256


@dataclass(frozen=True)
class RouteOption:
    """One route the policy may pick: its model, price and (self-hosted) speed.

    ``seconds_per_token`` turns GPU-second prices into per-request cost. ``expected_completion``
    is the fraction of ``max_tokens`` an answer typically uses (answers rarely hit the cap).
    """

    route: Route
    model: str
    cost: CostModel
    seconds_per_token: float = 0.0
    expected_completion: float = 0.5

    def __post_init__(self) -> None:
        if not self.route.is_cache and self.estimate(100, 100) <= 0.0:
            # a free route would win every comparison: the edge must carry its energy cost
            raise ValueError(
                f"route {self.route.value} ({self.model}) has zero estimated cost; "
                "set token, GPU-second or energy prices"
            )

    def estimate(self, prompt_tokens: int, max_tokens: int | None) -> float:
        completion = max(1, int((max_tokens or DEFAULT_COMPLETION_TOKENS) * self.expected_completion))
        seconds = (
            prompt_tokens * 0.1 + completion
        ) * self.seconds_per_token  # prefill ~10x faster than decode
        return self.cost.estimate(prompt_tokens, completion, seconds)


@dataclass(frozen=True)
class QualityTargets:
    """Target quality as a fraction of the best route's, per request > (tenant, domain) > tenant > default."""

    default: float = 0.95
    tenants: Mapping[str, float] = field(default_factory=dict)
    tenant_domains: Mapping[tuple[str, str], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for v in (self.default, *self.tenants.values(), *self.tenant_domains.values()):
            _check_target(v)

    def target(self, tenant: str = "", domain: str = "", override: float | None = None) -> float:
        if override is not None:
            return _check_target(override)
        if (tenant, domain) in self.tenant_domains:
            return self.tenant_domains[(tenant, domain)]
        return self.tenants.get(tenant, self.default)

    @classmethod
    def from_tenants(cls, tenants: Sequence[TenantConfig], default: float = 0.95) -> QualityTargets:
        per_tenant = {t.name: t.quality_target for t in tenants if t.quality_target is not None}
        per_domain = {(t.name, d): v for t in tenants for d, v in t.domain_quality_targets.items()}
        return cls(default, per_tenant, per_domain)


def _check_target(v: float) -> float:
    if not (0.0 < v <= 1.0) or math.isnan(v):
        raise ValueError(f"quality target {v!r} must be in (0, 1]")
    return v


@dataclass(frozen=True)
class Candidate:
    route: Route
    model: str
    p_success: float
    cost_usd: float
    utility: float
    available: bool = True


@dataclass(frozen=True)
class Decision:
    route: Route
    model: str
    target: float
    rule: str  # "calibrated" or "cheapest_adequate"
    lam: float
    reason: str
    candidates: tuple[Candidate, ...]
    classification: Classification | None = None

    @property
    def chosen(self) -> Candidate:
        return next(c for c in self.candidates if c.route is self.route)

    @property
    def fallbacks(self) -> list[Route]:
        """Where to go if the chosen route fails: dearer routes first by expected quality, then cheaper."""
        rest = [c for c in self.candidates if c.available and c.route is not self.route]
        up = sorted((c for c in rest if c.route.rank > self.route.rank), key=lambda c: c.route.rank)
        down = sorted((c for c in rest if c.route.rank < self.route.rank), key=lambda c: -c.route.rank)
        return [c.route for c in up + down]

    def to_trace_steps(self) -> list[TraceStep]:
        steps = []
        if self.classification is not None:
            c = self.classification
            steps.append(
                TraceStep("classify", "done", f"{c.task}/{c.domain}", detail={"modality": c.modality})
            )
        steps.append(
            TraceStep(
                "policy",
                "route",
                self.reason,
                detail={
                    "route": self.route.value,
                    "model": self.model,
                    "target": self.target,
                    "rule": self.rule,
                    "lambda": self.lam,
                },
            )
        )
        for cand in self.candidates:
            verdict = "unavailable" if not cand.available else "skip"
            verdict = "chosen" if cand.route is self.route else verdict
            steps.append(
                TraceStep(
                    cand.route.value,
                    verdict,
                    "",
                    detail={
                        "model": cand.model,
                        "p_success": round(cand.p_success, 4),
                        "cost_usd": cand.cost_usd,
                        "utility": round(cand.utility, 6),
                    },
                )
            )
        return steps


def refine_with_confidence(
    prior: float, confidence: float, pivot: float = 0.75, weight: float = 1.0
) -> float:
    """Update the local route's success estimate with the local model's own confidence.

    Log-odds update: a confidence equal to ``pivot`` (the level that carries no news, e.g. the edge's
    usual mean token probability) leaves the prior alone; higher raises it, lower lowers it.
    """
    eps = 1e-6
    p, c, v = (min(max(x, eps), 1 - eps) for x in (prior, confidence, pivot))
    z = math.log(p / (1 - p)) + weight * (math.log(c / (1 - c)) - math.log(v / (1 - v)))
    return 1.0 / (1.0 + math.exp(-z))


class RoutingPolicy:
    def __init__(
        self,
        options: Sequence[RouteOption],
        thresholds: ThresholdTable | None = None,
        targets: QualityTargets | None = None,
    ) -> None:
        if not options:
            raise ValueError("a policy needs at least one route option")
        if len({o.route for o in options}) != len(options):
            raise ValueError("one option per route")
        self.options = sorted(options, key=lambda o: o.route.rank)
        self.thresholds = thresholds
        self.targets = targets or QualityTargets()

    def decide(
        self,
        success: Mapping[Route, float],
        *,
        prompt_tokens: int,
        max_tokens: int,
        tenant: str = "",
        domain: str = "general",
        target: float | None = None,
        unavailable: Collection[Route] = (),
        classification: Classification | None = None,
    ) -> Decision:
        """Choose a route; ``success`` must have an estimate for every option's route."""
        t = self.targets.target(tenant, domain, target)
        costs = {o.route: o.estimate(prompt_tokens, max_tokens) for o in self.options}
        max_cost = max(costs.values()) or 1.0
        lam = self.thresholds.lam_for(t) if self.thresholds is not None else 0.0
        cands = []
        for o in self.options:
            if o.route not in success:
                raise KeyError(f"no success estimate for route {o.route.value}")
            p = float(success[o.route])
            cands.append(
                Candidate(
                    o.route,
                    o.model,
                    p,
                    costs[o.route],
                    p - lam * costs[o.route] / max_cost,
                    o.route not in unavailable,
                )
            )
        live = [c for c in cands if c.available]
        if not live:
            raise LookupError("every route is unavailable")
        best_p = max(c.p_success for c in live)
        if self.thresholds is not None:
            # ties go to the cheaper route (options are sorted cheapest first)
            pick = max(live, key=lambda c: (c.utility, -c.cost_usd))
            rule = "calibrated"
            reason = f"highest p - {lam:.3g}*cost/max_cost for target {t:.2f}"
        else:
            adequate = [c for c in live if c.p_success >= t * best_p - 1e-12]
            pick = min(adequate, key=lambda c: (c.cost_usd, c.route.rank))
            rule = "cheapest_adequate"
            reason = f"cheapest route with p >= {t:.2f} x best ({best_p:.3f})"
        return Decision(pick.route, pick.model, t, rule, lam, reason, tuple(cands), classification)
