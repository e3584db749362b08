"""What one app carries: its parts, typed keys, and its HTTP-level Prometheus series.

The metrics registry belongs to the app (no process-global registry), so several agents in one
process and every test get their own numbers. Other components register their series into the
same registry; ``/metrics`` renders all of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from edge_agent.pipeline import Pipeline
from edge_agent.request import Answer, HubClient, RequestContext, Tenancy
from shared.config import EdgeSettings


class FeedbackRecorder(Protocol):
    """Where ``POST /v1/feedback`` ratings go (``edge_agent.telemetry``'s recorder)."""

    def feedback(self, response_id: str, rating: float, tenant: str = "", user: str = "") -> object: ...


# model ids that mean "let the router decide", besides the local model's own name
AUTO_MODELS = frozenset({"auto", "edgeroute"})
HUB_PREFIX = "hub:"


CONTENT_TYPE = CONTENT_TYPE_LATEST
_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_CONF_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99)


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.http_requests = Counter(
            "edgeroute_http_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "edgeroute_http_request_duration_seconds",
            "Time to the end of the HTTP response",
            ["endpoint"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("edgeroute_http_in_flight_requests", "Requests being served", registry=r)
        self.answers = Counter(
            "edgeroute_answers", "Answers by final route", ["route", "streamed"], registry=r
        )
        self.answer_fallbacks = Counter(
            "edgeroute_answer_fallbacks", "Answers served locally after the hub could not answer", registry=r
        )
        self.answer_cost = Counter(
            "edgeroute_answer_cost_usd", "Estimated cost of answers", ["route"], registry=r
        )
        self.completion_tokens = Counter(
            "edgeroute_answer_completion_tokens", "Completion tokens by route", ["route"], registry=r
        )
        self.local_confidence = Histogram(
            "edgeroute_local_confidence",
            "Mean token probability of local drafts and answers",
            buckets=_CONF_BUCKETS,
            registry=r,
        )

    def observe_answer(self, answer: Answer, *, streamed: bool) -> None:
        route = answer.route.value
        self.answers.labels(route, "true" if streamed else "false").inc()
        if answer.fallback:
            self.answer_fallbacks.inc()
        self.answer_cost.labels(route).inc(answer.cost_usd)
        self.completion_tokens.labels(route).inc(answer.usage.completion_tokens)
        if answer.confidence is not None:
            self.local_confidence.observe(answer.confidence)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


@dataclass
class AgentState:
    settings: EdgeSettings
    pipeline: Pipeline
    tenancy: Tenancy
    metrics: HttpMetrics
    registry: CollectorRegistry
    hub: HubClient | None = None
    feedback: FeedbackRecorder | None = None
    started_at: float = field(default_factory=time.time)

    @property
    def local_model(self) -> str:
        return self.pipeline.backend.model_name

    def hub_models(self) -> list[str]:
        """Model names the hub announced, when the link exposes them."""
        names = getattr(self.hub, "hub_models", None)
        if isinstance(names, list | tuple | frozenset | set):
            return [n for n in names if isinstance(n, str)]
        return []


STATE = web.AppKey("edge_state", AgentState)
CONTEXT = web.RequestKey("edge_context", RequestContext)
REQUEST_ID = web.RequestKey("edge_request_id", str)
