"""Typed keys for what the app and each request carry."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry

from edge_agent.context import RequestContext, Tenancy
from edge_agent.metrics import HttpMetrics
from edge_agent.pipeline import Pipeline
from edge_agent.request import HubClient
from shared.config import EdgeSettings


class FeedbackRecorder(Protocol):
    """Where ``POST /v1/feedback`` ratings go (``edge_agent.telemetry``'s recorder)."""

    def feedback(self, response_id: str, rating: float, tenant: str = "", user: str = "") -> object: ...


# model ids that mean "let the router decide", besides the local model's own name
AUTO_MODELS = frozenset({"auto", "edgeroute"})
HUB_PREFIX = "hub:"


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
