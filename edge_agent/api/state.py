"""What one app carries: its parts, typed keys, and its HTTP-level Prometheus series.

The metrics registry belongs to the app (no process-global registry), so several agents in one
process and every test get their own numbers. Other components register their series into the
same registry; ``/metrics`` renders all of them. Facts about answers (route, cost, tokens,
fallbacks, confidence) are counted once, from the telemetry event every answer produces, streamed
or not (``edge_agent.telemetry.metrics``); this module counts only what the HTTP layer sees.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
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

from edge_agent.api.usage import HitUsage
from edge_agent.pipeline import Pipeline
from edge_agent.request import HubClient
from edge_agent.telemetry.metrics import LabelMemo
from edge_agent.tenancy import RequestContext, Tenancy
from shared.config import EdgeSettings
from shared.embedding import Vectors
from shared.taxonomy import AUTO_MODELS


class FeedbackRecorder(Protocol):
    """Where ``POST /v1/feedback`` ratings go (``edge_agent.telemetry``'s recorder)."""

    def feedback(self, response_id: str, rating: float, tenant: str = "", user: str = "") -> object: ...


class TextEmbedder(Protocol):
    """What ``POST /v1/embeddings`` needs of an embedder (``shared.embedding.OnnxEmbedder``)."""

    @property
    def dim(self) -> int: ...

    @property
    def max_length(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors: ...

    def token_counts(self, texts: Sequence[str]) -> list[int]: ...


@dataclass(frozen=True)
class EmbeddingModel:
    """An embedder under the model id clients name it by."""

    name: str
    embedder: TextEmbedder

    def serves(self, model: str) -> bool:
        return model == self.name or model in AUTO_MODELS


CONTENT_TYPE = CONTENT_TYPE_LATEST
_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


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
        self.of = LabelMemo()

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
    embeddings: EmbeddingModel | None = None
    hit_usage: HitUsage = field(default_factory=HitUsage)  # token counts of cache hits, remembered
    started_at: float = field(default_factory=time.time)

    @property
    def local_model(self) -> str:
        return self.pipeline.backend.model_name

    def hub_models(self) -> list[str]:
        """Model names the hub announced (none without a hub)."""
        return list(self.hub.hub_models) if self.hub is not None else []

    def media_models(self) -> list[str]:
        """Image and video models the hub announced: listed and retrievable, not chat targets."""
        return list(self.hub.media_models) if self.hub is not None else []


STATE = web.AppKey("edge_state", AgentState)
CONTEXT = web.RequestKey("edge_context", RequestContext)
REQUEST_ID = web.RequestKey("edge_request_id", str)
