"""Hub tier choice: which registered model answers an escalation that names no specific model.

An edge that names a model gets that model. One that sends ``""``, ``"auto"`` (or another of
``shared.taxonomy.HUB_CHOICE_MODELS``) lets the hub choose; ``"tier:<tier>"`` asks for a tier and
lets the hub pick its model.
With the edge's classification (per-tier success probabilities from the routing heads) the
``shared.routing`` policy picks the tier for the request's quality target: with the calibrated
threshold table (what the hub uses by default) the tier with the best ``p - lam * cost``, the
least-cost way to meet the target over many requests; without a table the cheapest tier whose ``p``
is within the target of the best. The table is used only when it was calibrated over this hub's
tiers (plus the edge's, which the hub never serves): its ``lam`` prices quality against the options
it was calibrated with, so over another set of tiers it would buy the wrong mix (a table that
counted on a cheap fine-tuned tier would starve a hub without one of its frontier). Without a
classification the hub's default model goes first.
Either way the plan lists every other registered model after the first choice (dearer tiers first,
then cheaper), so the dispatcher's ``FallbackChain`` can fall through when a tier fails.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection
from dataclasses import dataclass

from cloud_hub.registry import ModelRegistry, RegisteredModel
from shared.config import CostModel
from shared.routing.calibration import ThresholdTable
from shared.routing.heads import HEADS_DIR, THRESHOLDS_FILE
from shared.routing.policy import QualityTargets, RouteOption, RoutingPolicy
from shared.taxonomy import HUB_CHOICE_MODELS, Route, Tier
from shared.wire import Escalate, TraceStep

log = logging.getLogger(__name__)

TIER_PREFIX = "tier:"
# a fine-tune starts from the open model, so it inherits that estimate when the heads have none
_FALLBACK_ESTIMATE = {Tier.FINETUNED: Tier.OSS}
_UNKNOWN_P = 0.5
# typical decode speed used to price GPU-second entries before the call
_SECONDS_PER_TOKEN = 0.03


class TierChoiceError(Exception):
    """The request asked for a tier this hub cannot serve."""


@dataclass(frozen=True)
class TierPlan:
    """Models to try in order, and the trace steps that explain the order."""

    targets: tuple[RegisteredModel, ...]
    steps: tuple[TraceStep, ...]
    reason: str
    predicted: dict[str, float]  # model name → predicted success, when the edge classified


def wants_choice(name: str) -> bool:
    return name in HUB_CHOICE_MODELS or name.startswith(TIER_PREFIX)


class TierChooser:
    def __init__(
        self,
        registry: ModelRegistry,
        *,
        default_target: float = 0.95,
        thresholds: ThresholdTable | None = None,
    ) -> None:
        self.registry = registry
        self.targets = QualityTargets(default=default_target)
        # no table: "cheapest adequate" (p >= target x best p), which explains itself per request
        self.thresholds = thresholds
        self._warned = False

    @classmethod
    def calibrated(cls, registry: ModelRegistry, default_target: float = 0.95) -> TierChooser:
        """With the threshold table shipped beside the routing heads (the edge's cascade uses the
        same one), so both programs trade quality for cost at the same calibrated rate."""
        path = HEADS_DIR / THRESHOLDS_FILE
        table = ThresholdTable.load(path) if path.is_file() else None
        return cls(registry, default_target=default_target, thresholds=table)

    def plan(self, req: Escalate) -> TierPlan:
        models = self.registry.models
        if not models:
            raise TierChoiceError("this hub has no models")
        prompt_tokens = max(1, sum(len(m.content) for m in req.messages) // 4)
        options = {m.entry.name: _option(m, Route.HUB_OSS) for m in models}
        cost = {n: o.estimate(prompt_tokens, req.params.max_tokens) for n, o in options.items()}
        tiers: dict[Tier, list[RegisteredModel]] = {}
        for m in sorted(models, key=lambda m: (cost[m.entry.name], m.entry.name)):
            tiers.setdefault(m.entry.tier, []).append(m)
        pinned = _pinned_tier(req.model)
        if pinned is not None:
            if pinned not in tiers:
                have = ", ".join(sorted(t.value for t in tiers))
                raise TierChoiceError(f"no model in tier {pinned.value!r} on this hub; tiers: {have}")
            reason = f"{req.model} asked for the {pinned.value} tier; cheapest model in it first"
            step = TraceStep("policy", "route", reason, detail={"tier": pinned.value})
            order = _ordered(tiers, pinned)
            return TierPlan(order, (step, *_candidates(order, cost)), reason, {})
        cls = req.classification
        if cls is None or not cls.success:
            first = self._default_tier(tiers)
            default = self.registry.default_model or tiers[first][0].entry.name
            reason = f"no classification from the edge: hub default {default} first"
            step = TraceStep("policy", "route", reason, detail={"model": default})
            order = _ordered(tiers, first)
            order = tuple(sorted(order, key=lambda m: m.entry.name != default))
            return TierPlan(order, (step, *_candidates(order, cost)), reason, {})
        success: dict[Route, float] = {}
        predicted: dict[str, float] = {}
        for tier, members in tiers.items():
            p = _estimate(cls.success, tier)
            success[tier.route] = p
            predicted.update({m.entry.name: p for m in members})
        policy = RoutingPolicy(
            [_option(ms[0], t.route) for t, ms in tiers.items()], self._table_for(tiers), self.targets
        )
        decision = policy.decide(
            success,
            prompt_tokens=prompt_tokens,
            max_tokens=req.params.max_tokens,
            domain=cls.domain,
            target=req.quality_target,
            classification=cls,
        )
        chosen = next(t for t in tiers if t.route is decision.route)
        ranked = [*tiers[chosen]]
        for route in decision.fallbacks:
            ranked += tiers[next(t for t in tiers if t.route is route)]
        reason = f"{decision.reason}: {chosen.value} tier ({decision.model})"
        return TierPlan(tuple(ranked), tuple(decision.to_trace_steps()), reason, predicted)

    def _table_for(self, tiers: Collection[Tier]) -> ThresholdTable | None:
        """The threshold table when its options line up with this hub's tiers, else None."""
        table = self.thresholds
        if table is None or lines_up(table, tiers):
            return table
        if not self._warned:
            self._warned = True
            log.warning(
                "threshold table is calibrated over %s, this hub serves %s: choosing the cheapest "
                "adequate tier instead (rerun `cloud-hub calibrate` for this deployment)",
                ", ".join(table.options),
                ", ".join(sorted(t.value for t in tiers)),
            )
        return None

    def _default_tier(self, tiers: dict[Tier, list[RegisteredModel]]) -> Tier:
        default = self.registry.default_model
        for tier, members in tiers.items():
            if any(m.entry.name == default for m in members):
                return tier
        return min(tiers, key=lambda t: t.route.rank)


def lines_up(table: ThresholdTable, tiers: Collection[Tier]) -> bool:
    """Whether ``table`` was calibrated over exactly these hub tiers (and, optionally, the edge)."""
    return set(table.options) - {Tier.EDGE.value} == {t.value for t in tiers if t is not Tier.EDGE}


def _pinned_tier(name: str) -> Tier | None:
    if not name.startswith(TIER_PREFIX):
        return None
    value = name[len(TIER_PREFIX) :]
    try:
        return Tier(value)
    except ValueError:
        known = ", ".join(t.value for t in Tier)
        raise TierChoiceError(f"unknown tier {value!r} in {name!r}; tiers are {known}") from None


def _estimate(success: dict[str, float], tier: Tier) -> float:
    for key in (tier, _FALLBACK_ESTIMATE.get(tier)):
        if key is not None and key.value in success:
            p = float(success[key.value])
            if math.isfinite(p):
                return min(max(p, 0.0), 1.0)
    return _UNKNOWN_P


def _ordered(tiers: dict[Tier, list[RegisteredModel]], first: Tier) -> tuple[RegisteredModel, ...]:
    """``first`` tier's models, then dearer tiers upwards, then cheaper ones downwards."""
    rank = first.route.rank
    up = sorted((t for t in tiers if t.route.rank > rank), key=lambda t: t.route.rank)
    down = sorted((t for t in tiers if t.route.rank < rank), key=lambda t: -t.route.rank)
    return tuple(m for t in (first, *up, *down) for m in tiers[t])


def _candidates(order: tuple[RegisteredModel, ...], cost: dict[str, float]) -> list[TraceStep]:
    return [
        TraceStep(
            m.route.value,
            "chosen" if i == 0 else "fallback",
            "",
            detail={"model": m.entry.name, "cost_usd": cost[m.entry.name]},
        )
        for i, m in enumerate(order)
    ]


def _option(model: RegisteredModel, route: Route) -> RouteOption:
    cost = model.entry.cost
    seconds = _SECONDS_PER_TOKEN if cost.usd_per_gpu_second > 0 else 0.0
    if cost.estimate(100, 100, seconds) <= 0.0:
        # an unpriced entry (a test backend) must not look free: order it by tier, nearly at no cost
        cost = CostModel(usd_per_1k_completion=1e-9 * (1 + model.entry.tier.route.rank))
    return RouteOption(route, model.entry.name, cost, seconds)
