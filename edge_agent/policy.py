"""When a local draft is good enough to finish locally.

``EscalationPolicy`` is the seam for the routing library: a calibrated policy replaces the fixed
threshold by implementing ``decide`` with the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from edge_agent.backends.base import Confidence
from edge_agent.request import InferenceRequest
from shared.wire import Scalar


@dataclass(frozen=True)
class Draft:
    """The first tokens of the local answer. ``finished``: the model already stopped."""

    text: str
    confidence: Confidence
    finished: bool


@dataclass(frozen=True)
class Decision:
    escalate: bool
    reason: str
    detail: dict[str, Scalar] = field(default_factory=dict)


class EscalationPolicy(Protocol):
    name: str

    def decide(self, req: InferenceRequest, draft: Draft) -> Decision: ...


class ThresholdPolicy:
    """Escalate when the draft's mean token probability is below a fixed threshold.

    A tenant's ``quality_target``, when set, raises the bar for that tenant's requests.
    """

    name = "threshold"

    def __init__(self, threshold: float) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"confidence threshold must lie in [0, 1], got {threshold}")
        self.threshold = threshold

    def decide(self, req: InferenceRequest, draft: Draft) -> Decision:
        bar = max(self.threshold, req.ctx.quality_target or 0.0)
        conf = draft.confidence
        detail: dict[str, Scalar] = {
            "policy": self.name,
            "threshold": bar,
            "mean_prob": round(conf.mean_prob, 4),
            "min_prob": round(conf.min_prob, 4),
            "draft_tokens": conf.count,
        }
        if conf.mean_prob >= bar:
            return Decision(False, f"mean token probability {conf.mean_prob:.3f} >= {bar:.3f}", detail)
        return Decision(True, f"mean token probability {conf.mean_prob:.3f} < {bar:.3f}", detail)
