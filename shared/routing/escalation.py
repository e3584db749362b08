"""The cascade decision at the edge: keep the local draft, or escalate to the hub?

``CascadeJudge`` classifies the prompt (heads on its embedding), updates the local route's success
estimate with the draft's mean token probability, and lets the calibrated ``RoutingPolicy`` pick
among every tier the success head knows (edge, hub OSS, fine-tuned, frontier) for the request's
quality target. It escalates when the policy's pick is not the edge; the hub then picks its tier
from the same classification. Each route is priced at the mean cost the threshold table was
calibrated with (``cloud-hub calibrate`` records it), else at the defaults below. The edge's
``EscalationPolicy`` adapter calls ``judge`` with plain values, so this module does not depend on
the agent's request types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.config import CostModel, EdgeSettings
from shared.routing.calibration import ThresholdTable
from shared.routing.embed import TextEmbedder, routing_view
from shared.routing.heads import HEADS_DIR, THRESHOLDS_FILE, ClassifierHeads
from shared.routing.policy import Decision, QualityTargets, RouteOption, RoutingPolicy, refine_with_confidence
from shared.taxonomy import HUB_ROUTES, Route, Tier
from shared.wire import Classification, Scalar

# the edge does not know the hub's registry; without calibrated costs these defaults price the hub's
# tiers: self-hosted OSS at GPU-second prices, a large open model at its hosted token price, and a
# GPT-4-class API for the frontier
DEFAULT_HUB_OSS = CostModel(usd_per_gpu_second=0.0006)
DEFAULT_HUB_OSS_SECONDS_PER_TOKEN = 0.03
DEFAULT_HUB_FINETUNED = CostModel(usd_per_1k_prompt=0.0006, usd_per_1k_completion=0.0006)
DEFAULT_FRONTIER = CostModel(usd_per_1k_prompt=0.01, usd_per_1k_completion=0.03)
_HUB_NAMES = {Tier.OSS: "hub", Tier.FINETUNED: "hub-finetuned", Tier.FRONTIER: "frontier"}
_TIER_OF = {t.route: t for t in Tier}


@dataclass(frozen=True)
class MeasuredOption(RouteOption):
    """A route priced at its measured mean cost per request, the price its ``lam`` was calibrated
    against (a per-token price would rescale the cost ratios the table's ``lam`` assumes)."""

    usd_per_request: float = 0.0

    def estimate(self, prompt_tokens: int, max_tokens: int | None) -> float:
        return self.usd_per_request


def route_options(
    settings: EdgeSettings, tiers: Sequence[Tier], table: ThresholdTable | None
) -> list[RouteOption]:
    """One option per tier (the success head's labels): the table's calibrated cost when it has a
    positive one for that tier, else the local model's energy price or the hub defaults."""
    out: list[RouteOption] = []
    for tier in tiers:
        name = settings.local_model.name if tier is Tier.EDGE else _HUB_NAMES[tier]
        measured = table.cost_of(tier.value) if table is not None else None
        if measured is not None and measured > 0.0:
            out.append(MeasuredOption(tier.route, name, CostModel(), usd_per_request=measured))
        elif tier is Tier.EDGE:
            out.append(RouteOption(tier.route, name, settings.local_model.cost))
        elif tier is Tier.OSS:
            out.append(RouteOption(tier.route, name, DEFAULT_HUB_OSS, DEFAULT_HUB_OSS_SECONDS_PER_TOKEN))
        elif tier is Tier.FINETUNED:
            out.append(RouteOption(tier.route, name, DEFAULT_HUB_FINETUNED))
        else:
            out.append(RouteOption(tier.route, name, DEFAULT_FRONTIER))
    return out


@dataclass(frozen=True)
class Verdict:
    escalate: bool
    reason: str
    detail: dict[str, Scalar]
    decision: Decision


class CascadeJudge:
    name = "calibrated"

    def __init__(
        self,
        heads: ClassifierHeads,
        policy: RoutingPolicy,
        embedder: TextEmbedder | None = None,
        pivot: float = 0.75,
        weight: float = 1.0,
    ) -> None:
        self.heads, self.policy, self.embedder = heads, policy, embedder
        self.pivot, self.weight = pivot, weight

    @classmethod
    def from_settings(
        cls,
        settings: EdgeSettings,
        embedder: TextEmbedder | None,
        options: Sequence[RouteOption] = (),
        heads_dir: Path | None = None,
    ) -> CascadeJudge:
        """Heads and thresholds from ``models/routing`` (or ``heads_dir``), tenant targets from
        settings; without explicit ``options`` one route per tier of the success head."""
        folder = heads_dir or HEADS_DIR
        heads = ClassifierHeads.load(folder)
        table = ThresholdTable.load(folder / THRESHOLDS_FILE)
        tiers = sorted((Tier(label) for label in heads.success.labels), key=lambda t: t.route.rank)
        opts = list(options) or route_options(settings, tiers, table)
        policy = RoutingPolicy(opts, thresholds=table, targets=QualityTargets.from_tenants(settings.tenants))
        # the configured confidence threshold is the level at which a draft is "as expected"
        return cls(heads, policy, embedder, pivot=settings.confidence_threshold)

    def classify(self, prompt: str) -> Classification:
        if self.embedder is None:
            # without an embedder the heads fall back to their base rates (bias terms only)
            return self.heads.classify(np.zeros(self.heads.dim, dtype=np.float32), prompt)
        return self.heads.classify(self.embedder.embed([routing_view(prompt)])[0], prompt)

    def judge(
        self,
        prompt: str,
        mean_prob: float,
        *,
        tenant: str = "",
        quality_target: float | None = None,
        hub_available: bool = True,
        max_tokens: int = 256,
        pivot: float | None = None,
    ) -> Verdict:
        """``pivot`` overrides the configured one for this request (the hub's canary threshold)."""
        c = self.classify(prompt)
        routes = [o.route for o in self.policy.options]
        success = {r: c.success.get(_TIER_OF[r].value, 0.5) for r in routes}
        prior = success[Route.EDGE_LOCAL]
        pivot = self.pivot if pivot is None else pivot
        success[Route.EDGE_LOCAL] = refine_with_confidence(prior, mean_prob, pivot, self.weight)
        unavailable = () if hub_available else tuple(r for r in routes if r in HUB_ROUTES)
        d = self.policy.decide(
            success,
            prompt_tokens=max(1, len(prompt) // 4),
            max_tokens=max_tokens,
            tenant=tenant,
            domain=c.domain,
            target=quality_target,
            unavailable=unavailable,
            classification=c,
        )
        escalate = d.route is not Route.EDGE_LOCAL
        detail: dict[str, Scalar] = {
            "policy": self.name,
            "task": c.task,
            "domain": c.domain,
            "target": d.target,
            "mean_prob": round(mean_prob, 4),
            "pivot": pivot,
            "p_edge_prior": round(prior, 4),
            "p_edge": round(success[Route.EDGE_LOCAL], 4),
            **{f"p_{r.value}": round(success[r], 4) for r in routes if r in HUB_ROUTES},
            "choice": d.route.value,
        }
        verb = f"escalate to {d.route.value}" if escalate else "answer locally"
        p_edge = success[Route.EDGE_LOCAL]
        reason = f"{verb}: p_edge {prior:.2f}->{p_edge:.2f} at confidence {mean_prob:.2f}; {d.reason}"
        return Verdict(escalate, reason, detail, d)
