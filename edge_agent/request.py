"""The pipeline's vocabulary: one request in, deltas and one answer out, and the extension points.

Extension points are small Protocols so later stages slot in without touching the pipeline's
control flow: ``AnswerCache`` (looked up before the local model, fed after every answer),
``HubClient`` (what ``edge_agent.hub_link.HubLink`` provides) and ``OutcomeSink`` (telemetry).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from edge_agent.context import RequestContext
from shared.taxonomy import Route
from shared.wire import ChatMessage, Escalate, Reply, ReplyChunk, SamplingParams, TraceStep, Usage

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
