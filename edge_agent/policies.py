"""The two escalation policies and where the hub's routing policy comes in.

Both implement ``EscalationPolicy`` (``edge_agent.request``) on the same inputs. ``ThresholdPolicy``
is the configured default (``escalation_policy: threshold``): escalate when the draft's mean token
probability is below ``confidence_threshold``. ``CalibratedPolicy`` (``escalation_policy:
calibrated``) asks ``shared.routing``'s cascade judge instead. Either one takes its threshold from
the hub's ``PolicyUpdate`` once the hub sent one (``PolicyArm``), so the hub's canary can compare
two thresholds on live traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from edge_agent.request import Decision, Draft, InferenceRequest
from shared.wire import Classification, PolicyUpdate, Scalar

if TYPE_CHECKING:
    from shared.routing.escalation import CascadeJudge


@runtime_checkable
class PolicySource(Protocol):
    """Where the hub's routing policy comes from (``HubLink``); ``None`` until the hub sent one."""

    def current_policy(self) -> PolicyUpdate | None: ...


@dataclass(frozen=True)
class PolicyArm:
    """The policy version and threshold that decide one request; version "" is the local config."""

    version: str
    threshold: float
    canary: bool = False

    @classmethod
    def pick(cls, source: PolicySource | None, req: InferenceRequest, configured: float) -> PolicyArm:
        update = source.current_policy() if source is not None else None
        if update is None:
            return cls("", configured)
        # by request id, so a retry of the same request lands in the same arm
        return cls(*update.assign(req.ctx.request_id))

    def annotate(self, detail: dict[str, Scalar]) -> dict[str, Scalar]:
        if self.version:
            detail.update(policy_version=self.version, canary=self.canary)
        return detail


class ThresholdPolicy:
    """Escalate when the draft's mean token probability is below a fixed threshold.

    A tenant's ``quality_target``, when set, raises the bar for that tenant's requests.
    """

    name = "threshold"

    def __init__(self, threshold: float, source: PolicySource | None = None) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"confidence threshold must lie in [0, 1], got {threshold}")
        self.threshold = threshold
        self.source = source  # the hub's policy, once it sent one, replaces ``threshold``

    def before_draft(self, req: InferenceRequest) -> Decision | None:
        return None  # the threshold is on the draft's confidence: nothing to say without one

    def decide(self, req: InferenceRequest, draft: Draft) -> Decision:
        arm = PolicyArm.pick(self.source, req, self.threshold)
        bar = max(arm.threshold, req.ctx.quality_target or 0.0)
        conf = draft.confidence
        detail: dict[str, Scalar] = {
            "policy": self.name,
            "threshold": bar,
            "mean_prob": round(conf.mean_prob, 4),
            "min_prob": round(conf.min_prob, 4),
            "draft_tokens": conf.count,
        }
        arm.annotate(detail)
        if conf.mean_prob >= bar:
            return Decision(False, f"mean token probability {conf.mean_prob:.3f} >= {bar:.3f}", detail)
        return Decision(True, f"mean token probability {conf.mean_prob:.3f} < {bar:.3f}", detail)


class CalibratedPolicy:
    """``shared.routing``'s cascade judge: classify the prompt, refine the edge's success estimate
    with the draft's confidence, and escalate when the calibrated policy prefers a hub route for the
    tenant's quality target."""

    name = "calibrated"

    def __init__(self, judge: CascadeJudge, source: PolicySource | None = None) -> None:
        self.judge = judge
        self.source = source

    # About the most confident a draft gets in practice; a perfect 1.0 would turn any prior into a
    # certain local success and the check below could never fire.
    best_draft_confidence = 0.95

    def before_draft(self, req: InferenceRequest) -> Decision | None:
        """Escalate without drafting when even a draft at ``best_draft_confidence`` would lose to a
        hub tier: the draft could not change the decision, so its seconds of edge CPU buy nothing."""
        decision = self._decide(req, self.best_draft_confidence)
        if not decision.escalate:
            return None
        best = self.best_draft_confidence
        reason = f"before drafting: even a draft at confidence {best} would {decision.reason}"
        return Decision(True, reason, {**decision.detail, "pre_draft": True}, decision.classification)

    def decide(self, req: InferenceRequest, draft: Draft) -> Decision:
        return self._decide(req, draft.confidence.mean_prob)

    def classify(self, req: InferenceRequest) -> Classification:
        return self.judge.classify(_prompt_text(req))

    def _decide(self, req: InferenceRequest, confidence: float) -> Decision:
        prompt = _prompt_text(req)
        # the hub's threshold is the confidence that carries no news: the judge's pivot
        arm = PolicyArm.pick(self.source, req, self.judge.pivot)
        verdict = self.judge.judge(
            prompt,
            confidence,
            tenant=req.ctx.tenant,
            quality_target=req.ctx.quality_target,
            max_tokens=req.params.max_tokens,
            pivot=arm.threshold,
        )
        detail = arm.annotate(dict(verdict.detail))
        return Decision(verdict.escalate, verdict.reason, detail, verdict.decision.classification)


def _prompt_text(req: InferenceRequest) -> str:
    return req.prompt if req.prompt is not None else "\n".join(m.content for m in req.messages)
