"""The agent's aiohttp application: routes, one middleware for ids/auth/errors/metrics, lifecycle.

``create_app`` receives its parts (backend, hub link, caches, telemetry sink) instead of building
them, so tests and the CLI assemble the same app from real components they own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol, runtime_checkable

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry

from edge_agent.api.chat import chat_completions, completions
from edge_agent.api.errors import ApiError, error_response
from edge_agent.api.info import feedback as feedback_handler
from edge_agent.api.info import health, metrics, models
from edge_agent.api.state import CONTEXT, REQUEST_ID, STATE, AgentState, FeedbackRecorder, HttpMetrics
from edge_agent.backends.base import LocalBackend
from edge_agent.pipeline import Pipeline
from edge_agent.request import (
    AnswerCache,
    AuthError,
    EscalationPolicy,
    HubClient,
    OutcomeSink,
    PolicySource,
    Tenancy,
    ThresholdPolicy,
    request_id_from,
)
from shared.config import EdgeSettings

log = logging.getLogger(__name__)

_STATUS_TEXT = {
    404: "Unknown request URL: {method} {path}. Please check the URL for typos.",
    405: "Method {method} is not allowed for {path}.",
    413: "The request body is larger than the {limit} bytes this server accepts.",
}


@runtime_checkable
class Managed(Protocol):
    """A part with a lifetime tied to the app (the hub link)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def create_app(
    settings: EdgeSettings,
    backend: LocalBackend,
    *,
    hub: HubClient | None = None,
    policy: EscalationPolicy | None = None,
    caches: Sequence[AnswerCache] = (),
    sink: OutcomeSink | None = None,
    owns_backend: bool = True,
    registry: CollectorRegistry | None = None,
    resources: Sequence[Managed] = (),
    feedback: FeedbackRecorder | None = None,
) -> web.Application:
    """Build the app. With ``owns_backend`` the app closes the backend on shutdown.

    ``resources`` (telemetry delivery, cache files, ...) start after the hub link and close
    before it, in reverse order. Pass the ``registry`` other components registered series in.
    """
    registry = registry or CollectorRegistry()
    source = hub if isinstance(hub, PolicySource) else None  # the hub's policy and canary, when sent
    pipeline = Pipeline(
        backend,
        policy or ThresholdPolicy(settings.confidence_threshold, source),
        hub=hub,
        local_cost=settings.local_model.cost,
        draft_tokens=settings.draft_tokens,
        hub_timeout_s=settings.hub_timeout_s,
        caches=caches,
        sink=sink,
    )
    state = AgentState(
        settings, pipeline, Tenancy(settings.tenants), HttpMetrics(registry), registry, hub, feedback
    )
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[_edge_middleware])
    app[STATE] = state
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/feedback", feedback_handler)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.cleanup_ctx.append(_lifecycle(hub, resources, backend if owns_backend else None))
    return app


def _lifecycle(
    hub: HubClient | None, resources: Sequence[Managed], backend: LocalBackend | None
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if isinstance(hub, Managed):
            try:
                await hub.start()
            except Exception:  # the agent still answers locally; /health reports the hub as down
                log.exception("hub link failed to start")
        started: list[Managed] = []
        try:
            for resource in resources:
                await resource.start()
                started.append(resource)
            yield
        finally:
            for resource in reversed(started):
                try:
                    await resource.close()
                except Exception:
                    log.exception("closing %r failed", resource)
            if isinstance(hub, Managed):
                await hub.close()
            if backend is not None:
                await backend.close()

    return ctx


def _endpoint(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info.http_exception is None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def _edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state: AgentState = request.app[STATE]
    request_id = request_id_from(request.headers.get("x-request-id"))
    request[REQUEST_ID] = request_id
    endpoint = _endpoint(request)
    started = time.perf_counter()
    state.metrics.in_flight.inc()
    try:
        response = await _guarded(request, handler, state, request_id)
    finally:
        state.metrics.in_flight.dec()
    if not response.prepared:
        response.headers["x-request-id"] = request_id
    state.metrics.http_requests.labels(endpoint, str(response.status)).inc()
    state.metrics.http_latency.labels(endpoint).observe(time.perf_counter() - started)
    return response


async def _guarded(
    request: web.Request, handler: Handler, state: AgentState, request_id: str
) -> web.StreamResponse:
    try:
        if request.path.startswith("/v1/"):
            request[CONTEXT] = state.tenancy.context(request_id, request.headers.get("Authorization"))
        return await handler(request)
    except AuthError as exc:
        return error_response(401, str(exc), code="invalid_api_key")
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        template = _STATUS_TEXT.get(exc.status, "{reason}")
        message = template.format(
            method=request.method, path=request.path, limit=state.settings.max_body_bytes, reason=exc.reason
        )
        code = {404: "unknown_url", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status)
        return error_response(exc.status, message, code=code)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("request %s failed", request_id)
        return error_response(500, f"The server had an error processing request {request_id}.")
