"""``POST /v1/chat/completions`` and ``POST /v1/completions``: validate, route, answer or stream.

A stream names one ``model`` in every chunk: the model that answers, as far as it is known when
the first chunk goes out (the route is decided by then). That is the local model for local
answers, the cached answer's model for cache hits, and the hub model the hub names in its first
chunk; a hub too old to name it leaves the requested id, which then also stays to the end. The
answer's own model is in the trace either way.

A request the hub refuses as invalid (an unknown hub model, parameters the hub's models cannot
take) gets that refusal as a 404 or 400, never a local answer to a question it got wrong.

Refusals that come before any route runs carry ``Retry-After``: a saturated route (429 for the
local model, 503 when the hub link and then the local model are full: ``edge_agent.admission``)
and a tenant over its budget (429 ``budget_exceeded``: ``edge_agent.budgets``). Limits that need
no parsing beyond the JSON (``max_messages``) are checked before the body is validated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import re
from typing import Any

import msgspec
from aiohttp import web
from pydantic import ValidationError

from edge_agent.admission import Overloaded
from edge_agent.api.errors import ApiError, error_body, from_validation, parse_json_object
from edge_agent.api.format import Kind, Shape
from edge_agent.api.schemas import (
    DEFAULT_CHAT_MAX_TOKENS,
    DEFAULT_COMPLETION_MAX_TOKENS,
    CacheMode,
    ChatCompletionRequest,
    CompletionRequest,
)
from edge_agent.api.state import CONTEXT, REQUEST_ID, STATE, AgentState
from edge_agent.backends.base import BackendError, PromptTooLong
from edge_agent.budgets import BudgetExceeded
from edge_agent.hub_link.errors import HubRefused
from edge_agent.request import Answer, Delta, ForcedRoute, InferenceRequest, NoRouteAvailable
from shared.taxonomy import AUTO_MODELS, HUB_MODEL, Route, named_hub_model

log = logging.getLogger(__name__)

Event = Delta | Answer
_CACHE_ROUTES = frozenset({Route.EXACT_CACHE, Route.SEMANTIC_CACHE})
# compact UTF-8 JSON, several times faster than ``json.dumps`` on the bodies of every answer
_encode = msgspec.json.Encoder().encode

ROUTE_HEADER = "x-edgeroute-route"
REGENERATE_HEADER = "x-edgeroute-regenerate"  # "true"/"1": the user asked to regenerate an answer
QUALITY_HEADER = "x-edgeroute-quality-target"  # per-request quality target in (0, 1]
CACHE_HEADER = "x-edgeroute-cache"  # "bypass": no cache read or write for this request


async def chat_completions(request: web.Request) -> web.StreamResponse:
    limit = request.app[STATE].settings.max_messages
    body = parse_json_object(await request.read(), lambda data: _check_message_count(data, limit))
    try:
        parsed = ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        raise from_validation(exc) from None
    parsed.check_supported()
    req = _inference_request(request, parsed, parsed.chat_messages(), None, DEFAULT_CHAT_MAX_TOKENS)
    return await _serve(request, req, "chat", parsed.include_usage)


async def completions(request: web.Request) -> web.StreamResponse:
    body = parse_json_object(await request.read())
    try:
        parsed = CompletionRequest.model_validate(body)
    except ValidationError as exc:
        raise from_validation(exc) from None
    parsed.check_supported()
    req = _inference_request(request, parsed, (), parsed.prompt_text, DEFAULT_COMPLETION_MAX_TOKENS)
    return await _serve(request, req, "text", parsed.include_usage)


def _check_message_count(body: dict[str, Any], limit: int) -> None:
    messages = body.get("messages")
    if isinstance(messages, list) and len(messages) > limit:
        raise ApiError(
            400,
            f"Invalid 'messages': array too long. Expected an array with maximum length {limit}, "
            f"but got an array with length {len(messages)} instead.",
            param="messages",
            code="array_above_max_length",
        )


def _inference_request(
    request: web.Request,
    parsed: ChatCompletionRequest | CompletionRequest,
    messages: tuple[Any, ...],
    prompt: str | None,
    default_max_tokens: int,
) -> InferenceRequest:
    state = request.app[STATE]
    force, source, hub_model = _forced_route(state, parsed.model)
    override = parsed.edgeroute
    ctx = request[CONTEXT]
    target = _quality_header(request.headers.get(QUALITY_HEADER))
    cache, cache_source = _cache_header(request.headers.get(CACHE_HEADER)), "header"
    if override is not None:
        if override.route is not None:
            force, source = override.route, "body"
        hub_model = override.hub_model or hub_model
        if target is None:
            target = override.quality_target
        if cache is None:
            cache, cache_source = override.cache, "body"
    # a client that timed out has closed its socket: its answer reaches nobody (telemetry says so);
    # the request's own quality target beats its tenant's
    changes: dict[str, Any] = {"client_gone": lambda: request.transport is None}
    if target is not None:
        changes["quality_target"] = target
    ctx = dataclasses.replace(ctx, **changes)
    probe = override.probe if override is not None else None
    header = request.headers.get(ROUTE_HEADER)
    if header is not None:
        if header not in ("edge_local", "hub"):
            raise ApiError(
                400, f"{ROUTE_HEADER} must be 'edge_local' or 'hub', got {header!r}", param=ROUTE_HEADER
            )
        force, source = header, "header"  # type: ignore[assignment]
    regenerate = request.headers.get(REGENERATE_HEADER, "false").lower()
    if regenerate not in ("true", "1", "false", "0"):
        raise ApiError(400, f"{REGENERATE_HEADER} must be 'true' or 'false'", param=REGENERATE_HEADER)
    return InferenceRequest(
        ctx=ctx,
        model=parsed.model,
        messages=messages,
        params=parsed.sampling(default_max_tokens),
        prompt=prompt,
        stream=bool(parsed.stream),
        force=force,
        force_source=source,
        hub_model=hub_model,
        regenerate=regenerate in ("true", "1"),
        cache_bypass=cache == "bypass",
        cache_source=cache_source if cache == "bypass" else "",
        user=parsed.end_user,
        probe=(probe.reference, probe.kind) if probe is not None else None,
    )


def _cache_header(value: str | None) -> CacheMode | None:
    if value is None:
        return None
    if value == "bypass":
        return "bypass"
    if value == "default":
        return "default"
    raise ApiError(
        400,
        f"{CACHE_HEADER} must be 'bypass' or 'default', got {value!r}",
        param=CACHE_HEADER,
        code="invalid_value",
    )


def _quality_header(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        target = float(value)
    except ValueError:
        target = math.nan
    if not (0.0 < target <= 1.0):  # also false for NaN
        raise ApiError(
            400,
            f"{QUALITY_HEADER} must be a number in (0, 1], got {value!r}",
            param=QUALITY_HEADER,
            code="invalid_value",
        )
    return target


def _forced_route(state: AgentState, model: str) -> tuple[ForcedRoute | None, str, str]:
    """Route implied by the model id: local/auto names route freely, hub names go to the hub."""
    if model == state.local_model or model in AUTO_MODELS:
        return None, "", ""
    if model == HUB_MODEL:
        return "hub", "model", ""
    named = named_hub_model(model)
    if named is not None:
        return "hub", "model", named
    if model in state.hub_models():
        return "hub", "model", model
    if state.embeddings is not None and model == state.embeddings.name:
        raise ApiError(400, f"'{model}' is an embedding model; use it with /v1/embeddings", param="model")
    raise ApiError(
        404,
        f"The model '{model}' does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


async def _serve(
    request: web.Request, req: InferenceRequest, kind: Kind, include_usage: bool
) -> web.StreamResponse:
    state = request.app[STATE]
    request_id = request[REQUEST_ID]
    shape = Shape(kind, req.model, include_usage)
    events = state.pipeline.events(req)
    async with contextlib.aclosing(events):
        first = await _first(events, req.stream)
        if not req.stream:
            assert isinstance(first, Answer)  # without streaming the pipeline yields no deltas
            answer, cached = await _reported(state, req, first)
            headers = {ROUTE_HEADER: answer.route.value, "x-request-id": request_id}
            body = _encode(shape.full(answer, cached))
            return web.Response(body=body, content_type="application/json", charset="utf-8", headers=headers)
        shape.model = _stream_model(first, req.model, state.local_model)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                ROUTE_HEADER: first.route.value,
                "x-request-id": request_id,
            }
        )
        await response.prepare(request)
        if kind == "chat":
            await _send(response, shape.chunk("", first=True))
        event = first
        try:
            while True:
                if isinstance(event, Delta):
                    await _send(response, shape.chunk(event.text))
                else:
                    answer, cached = await _reported(state, req, event)
                    for chunk in shape.last_chunks(answer, cached):
                        await _send(response, chunk)
                    await response.write(b"data: [DONE]\n\n")
                    break
                event = await anext(events)
        except (ConnectionResetError, StopAsyncIteration):
            raise
        except Exception as exc:
            # headers are gone: report in-band, the way the OpenAI API does mid-stream
            log.warning("stream %s failed after it started: %s", request_id, exc)
            message = f"The answer to request {request_id} was interrupted after it started."
            await _send(response, error_body(503, message, code="stream_interrupted"))
        await response.write_eof()
        return response


async def _first(events: Any, stream: bool) -> Event:
    """The first event (for a non-streamed request, the answer), or the ``ApiError`` it ends in."""
    try:
        first: Event = await anext(events)
        if not stream and not isinstance(first, Answer):
            first = await _collect(events)
    except StopAsyncIteration:
        raise ApiError(503, "no route produced an answer", code="no_route") from None
    except PromptTooLong as exc:
        raise ApiError(400, str(exc), param="messages", code="context_length_exceeded") from None
    except HubRefused as exc:
        raise _refusal(exc) from None
    except Overloaded as exc:
        retry = {"Retry-After": str(exc.retry_after_s)}
        raise ApiError(exc.status, exc.message, code="overloaded", headers=retry) from None
    except BudgetExceeded as exc:
        retry = {"Retry-After": str(exc.retry_after_s)}
        raise ApiError(429, exc.message, code="budget_exceeded", headers=retry) from None
    except (NoRouteAvailable, BackendError) as exc:
        log.warning("no route answered: %s", exc)
        raise ApiError(503, "no route can answer this request", code="no_route") from None
    return first


# "HubBackendError: ", "AttemptFailed: ": names of the hub's exception classes, not for clients
_CLASS_PREFIX = re.compile(r"^(?:[A-Za-z_][\w.]*(?:Error|Exception|Failed|Recorded)\s*:\s*)+")


def _refusal(exc: HubRefused) -> ApiError:
    reason = _CLASS_PREFIX.sub("", exc.message).strip() or "the request is invalid"
    if exc.code == "unknown_model":
        return ApiError(404, f"The hub has no such model: {reason}", param="model", code="model_not_found")
    return ApiError(400, f"The hub refused this request: {reason}", code="invalid_request")


def _stream_model(first: Event, requested: str, local_model: str) -> str:
    """The model every chunk names (see the module docstring)."""
    if first.model:
        return first.model
    if first.route is Route.EDGE_LOCAL:
        return local_model
    return requested


async def _reported(state: AgentState, req: InferenceRequest, answer: Answer) -> tuple[Answer, int]:
    """The answer with the usage the client is told, and how many of its prompt tokens were
    cached: a cache hit counts its prompt and the stored text, and all of that prompt is cached."""
    if answer.route not in _CACHE_ROUTES or answer.usage.total_tokens:
        return answer, 0
    usage = await state.hit_usage.count(state.pipeline.backend, req, answer.text)
    if usage is None:
        return answer, 0
    return dataclasses.replace(answer, usage=usage), usage.prompt_tokens


async def _collect(events: Any) -> Answer:
    async for event in events:
        if isinstance(event, Answer):
            return event
    raise ApiError(503, "no route produced an answer", code="no_route")


async def _send(response: web.StreamResponse, obj: dict[str, Any]) -> None:
    await response.write(b"data: " + _encode(obj) + b"\n\n")
