"""The pipeline's vocabulary: who asks, one request in, deltas and one answer out, and the
extension points.

Who is asking (``RequestContext``) comes from the transport (API key → tenant), never from the
JSON body; caches key on ``tenant``, telemetry and the hub only ever see ``tenant_hash``.

Extension points are small Protocols so later stages slot in without touching the pipeline's
control flow: ``AnswerCache`` (looked up before the local model, fed after every answer),
``EscalationPolicy`` (judges the local draft; a calibrated policy replaces ``ThresholdPolicy``
by implementing ``decide`` with the same inputs), ``HubClient`` (what
``edge_agent.hub_link.HubLink`` provides) and ``OutcomeSink`` (telemetry).
"""

from __future__ import annotations

import hmac
import re
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from edge_agent.backends.base import Confidence
from shared.config import TenantConfig
from shared.taxonomy import Route
from shared.telemetry import identity_hash
from shared.wire import (
    ChatMessage,
    Classification,
    Escalate,
    PolicyUpdate,
    Reply,
    ReplyChunk,
    SamplingParams,
    Scalar,
    TraceStep,
    Usage,
)

if TYPE_CHECKING:
    from shared.routing.escalation import CascadeJudge

DEFAULT_TENANT = "default"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    tenant: str = DEFAULT_TENANT
    quality_target: float | None = None
    received_at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)

    @property
    def tenant_hash(self) -> str:
        return identity_hash(self.tenant)


class AuthError(Exception):
    """The caller presented no key, or one no tenant owns."""


def request_id_from(header: str | None) -> str:
    """Echo a client's id when it is safe to put in logs and headers; otherwise make one."""
    if header and _SANE_REQUEST_ID.match(header):
        return header
    return f"req-{uuid.uuid4().hex}"


class Tenancy:
    """Maps API keys to tenants. With no tenants configured, everyone is the default tenant."""

    def __init__(self, tenants: list[TenantConfig]) -> None:
        self._tenants = list(tenants)

    @property
    def enforced(self) -> bool:
        return bool(self._tenants)

    def resolve(self, authorization: str | None) -> TenantConfig | None:
        """The tenant behind an ``Authorization`` header; ``None`` when auth is off."""
        if not self._tenants:
            return None
        if not authorization:
            raise AuthError("missing API key: send it as 'Authorization: Bearer <key>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("malformed Authorization header: expected 'Bearer <key>'")
        presented = token.strip().encode()
        found: TenantConfig | None = None
        for tenant in self._tenants:
            # compare against every key so timing does not reveal which prefix matched
            if hmac.compare_digest(presented, tenant.api_key.get_secret_value().encode()):
                found = tenant
        if found is None:
            raise AuthError("incorrect API key provided")
        return found

    def context(self, request_id: str, authorization: str | None) -> RequestContext:
        tenant = self.resolve(authorization)
        if tenant is None:
            return RequestContext(request_id=request_id)
        return RequestContext(request_id=request_id, tenant=tenant.name, quality_target=tenant.quality_target)


ForcedRoute = Literal["edge_local", "hub"]


@dataclass(frozen=True)
class InferenceRequest:
    """A validated request. ``prompt`` is set for legacy completions, ``messages`` for chat."""

    ctx: RequestContext
    model: str
    messages: tuple[ChatMessage, ...]
    params: SamplingParams
    prompt: str | None = None
    stream: bool = False
    force: ForcedRoute | None = None
    force_source: str = ""  # "model", "header" or "body": why the route was forced
    hub_model: str = ""  # empty: the hub's default model
    regenerate: bool = False  # the client asked again for a fresh answer (telemetry counts it)
    # no cache is read or written for this request (benchmark baselines); the hub shares nothing
    cache_bypass: bool = False
    cache_source: str = ""  # "header" or "body": who asked for the bypass

    @property
    def hub_messages(self) -> list[ChatMessage]:
        """The hub speaks chat only; a raw completion prompt travels as one user turn."""
        if self.prompt is not None:
            return [ChatMessage(role="user", content=self.prompt)]
        return list(self.messages)


@dataclass(frozen=True)
class Delta:
    """A piece of answer text, in order, and the route producing it.

    For hub streams the route is provisional (``hub_oss``) until the final ``Answer`` names the
    hub's tier; a streamed HTTP response has to send its headers before that is known.
    """

    text: str
    route: Route


@dataclass(frozen=True)
class Answer:
    text: str
    finish_reason: str
    usage: Usage
    route: Route
    model: str
    trace: tuple[TraceStep, ...]
    confidence: float | None = None
    cost_usd: float = 0.0
    fallback: bool = False
    escalation_reason: str = ""

    def edgeroute_field(self) -> dict[str, object]:
        """The ``edgeroute`` member of a response body."""
        return {
            "route": self.route.value,
            "trace": [_step_dict(s) for s in self.trace],
            "confidence": None if self.confidence is None else round(self.confidence, 4),
            "cost_usd": self.cost_usd,
            "fallback": self.fallback,
        }


def _step_dict(step: TraceStep) -> dict[str, object]:
    return {
        "stage": step.stage,
        "decision": step.decision,
        "reason": step.reason,
        "elapsed_ms": step.elapsed_ms,
        "detail": dict(step.detail),
    }


@dataclass(frozen=True)
class CacheHit:
    text: str
    model: str
    route: Route = Route.EXACT_CACHE


class AnswerCache(Protocol):
    """A cache stage. ``lookup`` always returns its trace steps, hit or not."""

    async def lookup(self, req: InferenceRequest) -> tuple[CacheHit | None, Sequence[TraceStep]]: ...

    async def store(self, req: InferenceRequest, answer: Answer) -> None: ...


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
    # what the routing heads made of the prompt; travels with an escalation so the hub can pick a tier
    classification: Classification | None = None


class EscalationPolicy(Protocol):
    name: str

    def before_draft(self, req: InferenceRequest) -> Decision | None:
        """An escalation decided from the prompt alone, or None to draft first."""
        ...

    def decide(self, req: InferenceRequest, draft: Draft) -> Decision: ...


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

    def _decide(self, req: InferenceRequest, confidence: float) -> Decision:
        prompt = req.prompt if req.prompt is not None else "\n".join(m.content for m in req.messages)
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


class HubClient(Protocol):
    """The link to the hub. Failures raise (``HubUnavailable``, ``HubTimeout``, ``HubError``)."""

    @property
    def connected(self) -> bool: ...

    async def escalate(self, request: Escalate) -> Reply: ...

    def stream(self, request: Escalate) -> AsyncIterator[ReplyChunk | Reply]: ...


@dataclass(frozen=True)
class Outcome:
    """What happened to one request, for telemetry and metrics."""

    request: InferenceRequest
    answer: Answer
    latency_s: float
    ttft_s: float | None
    extra: dict[str, str] = field(default_factory=dict)


class OutcomeSink(Protocol):
    def __call__(self, outcome: Outcome) -> None: ...


class NoRouteAvailable(Exception):
    """Every route that could answer failed (the API answers 503)."""
