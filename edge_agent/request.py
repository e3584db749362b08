"""The pipeline's vocabulary: one request in, deltas and one answer out, and the extension points.

Who is asking (``RequestContext``) lives in ``edge_agent.tenancy``; the escalation policies that
implement ``EscalationPolicy`` live in ``edge_agent.policies``.

Extension points are small Protocols so later stages slot in without touching the pipeline's
control flow: ``AnswerCache`` (looked up before the local model, fed after every answer),
``EscalationPolicy`` (judges the local draft), ``HubClient`` (what ``edge_agent.hub_link.HubLink``
provides) and ``OutcomeSink`` (telemetry).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from edge_agent.backends.base import Confidence
from edge_agent.tenancy import RequestContext
from shared.embedding import Vectors
from shared.taxonomy import Route
from shared.wire import (
    ChatMessage,
    Classification,
    Escalate,
    Reply,
    ReplyChunk,
    SamplingParams,
    Scalar,
    TraceStep,
    Usage,
)

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
    user: str = ""  # the body's end-user id; telemetry sees only ``ctx.user_hash(user)``
    # evaluation traffic's known answer (``reference``, ``kind``): telemetry only, never routing
    probe: tuple[str, str] | None = None

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
    model: str = ""  # the model producing the text, when known before the answer ends


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


@dataclass(frozen=True, eq=False)
class CacheLookup:
    """What one cache made of a request: the hit or ``None``, the trace steps it took either way,
    and the question's embedding when the lookup computed one, so that storing the answer later
    does not embed the same question a second time."""

    hit: CacheHit | None
    steps: Sequence[TraceStep]
    embedding: Vectors | None = None


class AnswerCache(Protocol):
    """A cache stage. ``store`` gets back what this cache's own ``lookup`` returned for the same
    request (``None`` when that lookup failed or was skipped)."""

    async def lookup(self, req: InferenceRequest) -> CacheLookup: ...

    async def store(self, req: InferenceRequest, answer: Answer, looked: CacheLookup | None) -> None: ...


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
class PromptClassifier(Protocol):
    """A policy that can say what its heads make of a prompt without deciding anything: a request
    whose route the client forced is still counted under its real domain and task."""

    def classify(self, req: InferenceRequest) -> Classification: ...


class HubClient(Protocol):
    """The link to the hub. Failures raise (``HubUnavailable``, ``HubTimeout``, ``HubError``)."""

    @property
    def connected(self) -> bool: ...

    @property
    def hub_models(self) -> Sequence[str]:
        """Model names the hub announced when the link connected (empty before that)."""
        ...

    @property
    def media_models(self) -> Sequence[str]:
        """The hub's image and video models (listed, never a chat target)."""
        ...

    async def escalate(self, request: Escalate) -> Reply: ...

    def stream(self, request: Escalate) -> AsyncGenerator[ReplyChunk | Reply, None]: ...


@dataclass(frozen=True)
class Outcome:
    """What happened to one request, for telemetry and metrics."""

    request: InferenceRequest
    answer: Answer
    latency_s: float
    ttft_s: float | None
    extra: dict[str, str] = field(default_factory=dict)
    # the client had hung up (timed out) before the answer was ready: nobody received it
    client_gone: bool = False


class OutcomeSink(Protocol):
    def __call__(self, outcome: Outcome) -> None: ...


@runtime_checkable
class DrainingSink(Protocol):
    """A sink that finishes its writes after it returns (the telemetry spool's are batched)."""

    def __call__(self, outcome: Outcome) -> None: ...

    async def drain(self) -> None: ...


class NoRouteAvailable(Exception):
    """Every route that could answer failed (the API answers 503)."""
