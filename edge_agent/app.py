"""The agent's aiohttp application: routes, one middleware for ids/auth/errors/metrics, lifecycle.

``create_app`` receives its parts (backend, hub link, caches, telemetry sink) instead of building
them, so tests and the CLI assemble the same app from real components they own. Two parts follow
from the settings alone unless given: the admission gates, sized for the backend, and, when a
tenant has a budget, the budget ledger in ``<home>/budgets.db``, which the app closes. Parts with a
lifetime (``Managed``) start with the app and close with it, after the pipeline has drained the
bookkeeping of the answers it already sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry

from edge_agent.admission import Admission
from edge_agent.api.chat import chat_completions, completions
from edge_agent.api.embeddings import embeddings as embeddings_handler
from edge_agent.api.errors import ApiError, error_response, is_unicode_text, printable
from edge_agent.api.images import add_routes as add_image_routes
from edge_agent.api.info import feedback as feedback_handler
from edge_agent.api.info import health, metrics, model, models
from edge_agent.api.origin import host_refusal
from edge_agent.api.state import (
    CONTEXT,
    REQUEST_ID,
    STATE,
    AgentState,
    EmbeddingModel,
    FeedbackRecorder,
    HttpMetrics,
)
from edge_agent.backends.base import LocalBackend
from edge_agent.budgets import BudgetLedger, Budgets
from edge_agent.images.gateway import ImageGateway
from edge_agent.images.metering import MediaMeter
from edge_agent.pipeline import Pipeline
from edge_agent.policies import PolicySource, ThresholdPolicy
from edge_agent.request import AnswerCache, EscalationPolicy, HubClient, OutcomeSink
from edge_agent.telemetry.delivery import TelemetryDeliverer
from edge_agent.tenancy import AuthError, RequestContext, Tenancy, request_id_from
from shared.config import EdgeSettings

log = logging.getLogger(__name__)

_STATUS_TEXT = {
    404: "Unknown request URL: {method} {path}. Please check the URL for typos.",
    405: "Method {method} is not allowed for {path}.",
    413: "The request body is larger than the {limit} bytes this server accepts.",
}
# what a 5xx body says: the cause is logged with the request id, never sent (it may be anything
# from a backend's exception text to a file path)
_SERVER_ERROR_TEXT = {
    503: "No route could answer request {request_id} right now; try again later.",
}
_DEFAULT_SERVER_ERROR = "The server had an error processing request {request_id}."


@runtime_checkable
class Managed(Protocol):
    """A part with a lifetime tied to the app (the hub link)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class SupportsClose(Protocol):
    def close(self) -> None: ...


class ClosingResource:
    """Closes a synchronous resource (a SQLite-backed store) when the app shuts down."""

    def __init__(self, closeable: SupportsClose) -> None:
        self.closeable = closeable

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await asyncio.to_thread(self.closeable.close)


class DeliveryResource:
    """Runs telemetry delivery for the app's lifetime; the spool keeps what is not yet sent."""

    def __init__(self, deliverer: TelemetryDeliverer) -> None:
        self.deliverer = deliverer

    async def start(self) -> None:
        self.deliverer.start()

    async def close(self) -> None:
        await self.deliverer.close()


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
    embeddings: EmbeddingModel | None = None,
    admission: Admission | None = None,
    budgets: Budgets | None = None,
    images: ImageGateway | None = None,
) -> web.Application:
    """Build the app. With ``owns_backend`` the app closes the backend on shutdown.

    ``resources`` (telemetry delivery, cache files, ...) start after the hub link and close
    before it, in reverse order. Pass the ``registry`` other components registered series in.
    ``embeddings`` serves ``POST /v1/embeddings`` (404 for every model without it). ``images``
    serves the image and video routes (``edge_agent.api.images``; generation runs on the hub),
    metered by the same budgets and admission as text (``edge_agent.images.metering``).
    """
    registry = registry or CollectorRegistry()
    parts = list(resources)
    if budgets is None and any(t.budget_usd is not None for t in settings.tenants):
        budgets = open_budgets(settings)
        parts.append(ClosingResource(budgets))
    if images is not None:  # closes before the budgets: its running videos settle their holds
        parts.append(images)
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
        admission=admission or Admission.from_settings(settings.admission, backend),
        budgets=budgets,
    )
    state = AgentState(
        settings,
        pipeline,
        Tenancy(settings.tenants),
        HttpMetrics(registry),
        registry,
        hub,
        feedback,
        embeddings,
    )
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[_edge_middleware])
    app[STATE] = state
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/v1/models/{model:.+}", model)  # hub model names may hold a "/"
    app.router.add_post("/v1/embeddings", embeddings_handler)
    app.router.add_post("/v1/feedback", feedback_handler)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    if images is not None:  # /v1/images/..., /v1/videos/...: generated on the hub
        images.use_meter(MediaMeter.from_settings(settings.images, budgets, pipeline.admission))
        add_image_routes(app, images)
    app.cleanup_ctx.append(_lifecycle(pipeline, hub, parts, backend if owns_backend else None))
    return app


def open_budgets(settings: EdgeSettings, ledger: BudgetLedger | None = None) -> Budgets:
    """The tenants' budgets over ``ledger`` (default: ``<home>/budgets.db``), priced as the
    pipeline prices answers."""
    if ledger is None:
        ledger = BudgetLedger(settings.home / "budgets.db")
    return Budgets(
        settings.tenants,
        ledger,
        local_cost=settings.local_model.cost,
        hub_price_ceiling=settings.hub_price_ceiling,
        draft_tokens=settings.draft_tokens,
        hub_timeout_s=settings.hub_timeout_s,
    )


def _lifecycle(
    pipeline: Pipeline, hub: HubClient | None, resources: Sequence[Managed], backend: LocalBackend | None
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
            # the caches and the spool the bookkeeping writes to close below
            await pipeline.aclose()
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
    # a rebound DNS name or a foreign page's Origin is refused before anything else runs
    refusal = host_refusal(
        request.headers.get("Host"), request.headers.get("Origin"), state.settings.allowed_hosts
    )
    try:
        if refusal is not None:
            response: web.StreamResponse = error_response(403, refusal, code="forbidden_host")
        else:
            response = await _guarded(request, handler, state, request_id)
    finally:
        state.metrics.in_flight.dec()
    if not response.prepared:
        response.headers["x-request-id"] = request_id
    state.metrics.of(state.metrics.http_requests, endpoint, str(response.status)).inc()
    state.metrics.of(state.metrics.http_latency, endpoint).observe(time.perf_counter() - started)
    return response


async def _guarded(
    request: web.Request, handler: Handler, state: AgentState, request_id: str
) -> web.StreamResponse:
    """Run the handler; every failure becomes an OpenAI error body with no internal text."""
    try:
        if request.path.startswith("/v1/"):
            request[CONTEXT] = _tenant_context(request, state, request_id)
        return await handler(request)
    except AuthError as exc:
        return error_response(401, str(exc), code="invalid_api_key")
    except ApiError as exc:
        if exc.status >= 500:
            log.warning("request %s: %s %s", request_id, exc.status, exc.message)
            return _server_error(exc.status, request_id, exc.code, exc.headers)
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(request, exc, state, request_id)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("request %s failed", request_id)
        return _server_error(500, request_id, None)


def _tenant_context(request: web.Request, state: AgentState, request_id: str) -> RequestContext:
    authorization = request.headers.get("Authorization")
    if state.tenancy.enforced and authorization is not None and not is_unicode_text(authorization):
        # undecodable bytes: no key has them, and comparing them would raise
        raise AuthError("malformed Authorization header: expected 'Bearer <key>' in UTF-8")
    return state.tenancy.context(request_id, authorization)


def _http_error(
    request: web.Request, exc: web.HTTPException, state: AgentState, request_id: str
) -> web.Response:
    """aiohttp's own 4xx/5xx (no route, wrong method, body too large) in the OpenAI error shape."""
    if exc.status >= 500:
        return _server_error(exc.status, request_id, None)
    template = _STATUS_TEXT.get(exc.status, "{reason}")
    message = template.format(
        method=request.method,
        path=printable(request.path),
        limit=state.settings.max_body_bytes,
        reason=exc.reason,
    )
    code = {404: "unknown_url", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status)
    response = error_response(exc.status, message, code=code)
    if "Allow" in exc.headers:  # a 405 names the methods the path takes
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def _server_error(
    status: int, request_id: str, code: str | None, headers: Mapping[str, str] | None = None
) -> web.Response:
    text = _SERVER_ERROR_TEXT.get(status, _DEFAULT_SERVER_ERROR)
    response = error_response(status, text.format(request_id=request_id), code=code)
    response.headers.update(headers or {})
    return response
