"""The cascade decision at the edge: keep the local draft, or escalate to the hub?

``CascadeJudge`` classifies the prompt (heads on its embedding), updates the local route's success
estimate with the draft's mean token probability, and lets the calibrated ``RoutingPolicy`` pick
among edge / hub OSS / frontier for the request's quality target. It escalates when the policy's
pick is not the edge. The edge's ``EscalationPolicy`` adapter calls ``judge`` with plain values, so
this module does not depend on the agent's request types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shared.config import CostModel, EdgeSettings
from shared.routing.calibration import ThresholdTable
from shared.routing.embed import TextEmbedder
from shared.routing.heads import HEADS_DIR, THRESHOLDS_FILE, ClassifierHeads
from shared.routing.policy import Decision, QualityTargets, RouteOption, RoutingPolicy, refine_with_confidence
from shared.taxonomy import HUB_ROUTES, Route, Tier
from shared.wire import Classification, Scalar

# the edge does not know the hub's registry; these defaults match the hub's default model entry
# (self-hosted OSS at GPU-second prices) and a GPT-4-class API for the frontier
DEFAULT_HUB_OSS = CostModel(usd_per_gpu_second=0.0006)
DEFAULT_HUB_OSS_SECONDS_PER_TOKEN = 0.03
DEFAULT_FRONTIER = CostModel(usd_per_1k_prompt=0.01, usd_per_1k_completion=0.03)
_TIERS = (Tier.EDGE, Tier.OSS, Tier.FRONTIER)


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
        cls, settings: EdgeSettings, embedder: TextEmbedder | None, options: Sequence[RouteOption] = ()
    ) -> CascadeJudge:
        """Heads and thresholds from ``models/routing``, tenant targets from settings."""
        opts = list(options) or [
            RouteOption(Route.EDGE_LOCAL, settings.local_model.name, settings.local_model.cost),
            RouteOption(Route.HUB_OSS, "hub", DEFAULT_HUB_OSS, DEFAULT_HUB_OSS_SECONDS_PER_TOKEN),
            RouteOption(Route.FRONTIER, "frontier", DEFAULT_FRONTIER),
        ]
        policy = RoutingPolicy(
            opts,
            thresholds=ThresholdTable.load(HEADS_DIR / THRESHOLDS_FILE),
            targets=QualityTargets.from_tenants(settings.tenants),
        )
        # the configured confidence threshold is the level at which a draft is "as expected"
        return cls(ClassifierHeads.load(), policy, embedder, pivot=settings.confidence_threshold)

    def classify(self, prompt: str) -> Classification:
        if self.embedder is None:
            # without an embedder the heads fall back to their base rates (bias terms only)
            return self.heads.classify(np.zeros(self.heads.dim, dtype=np.float32), prompt)
        return self.heads.classify(self.embedder.embed([prompt])[0], prompt)

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
        success = {t.route: c.success.get(t.value, 0.5) for t in _TIERS}
        prior = success[Route.EDGE_LOCAL]
        pivot = self.pivot if pivot is None else pivot
        success[Route.EDGE_LOCAL] = refine_with_confidence(prior, mean_prob, pivot, self.weight)
        unavailable = () if hub_available else tuple(HUB_ROUTES)
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
            "p_hub_oss": round(success[Route.HUB_OSS], 4),
            "p_frontier": round(success[Route.FRONTIER], 4),
            "choice": d.route.value,
        }
        verb = f"escalate to {d.route.value}" if escalate else "answer locally"
        p_edge = success[Route.EDGE_LOCAL]
        reason = f"{verb}: p_edge {prior:.2f}->{p_edge:.2f} at confidence {mean_prob:.2f}; {d.reason}"
        return Verdict(escalate, reason, detail, d)
