"""``POST /v1/chat/completions`` and ``POST /v1/completions``: validate, route, answer or stream."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from edge_agent.api.errors import ApiError, error_body, from_validation, parse_json_object
from edge_agent.api.format import Kind, Shape
from edge_agent.api.schemas import (
    DEFAULT_CHAT_MAX_TOKENS,
    DEFAULT_COMPLETION_MAX_TOKENS,
    CacheMode,
    ChatCompletionRequest,
    CompletionRequest,
)
from edge_agent.api.state import AUTO_MODELS, CONTEXT, HUB_PREFIX, REQUEST_ID, STATE, AgentState
from edge_agent.backends.base import BackendError, PromptTooLong
from edge_agent.request import Answer, Delta, ForcedRoute, InferenceRequest, NoRouteAvailable

log = logging.getLogger(__name__)

ROUTE_HEADER = "x-edgeroute-route"
REGENERATE_HEADER = "x-edgeroute-regenerate"  # "true"/"1": the user asked to regenerate an answer
QUALITY_HEADER = "x-edgeroute-quality-target"  # per-request quality target in (0, 1]
CACHE_HEADER = "x-edgeroute-cache"  # "bypass": no cache read or write for this request


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = parse_json_object(await request.read())
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
    if target is not None:
        # the request's own target beats its tenant's
        ctx = dataclasses.replace(ctx, quality_target=target)
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
    if model == "hub":
        return "hub", "model", ""
    if model.startswith(HUB_PREFIX) and len(model) > len(HUB_PREFIX):
        return "hub", "model", model[len(HUB_PREFIX) :]
    if model in state.hub_models():
        return "hub", "model", model
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
    shape = Shape(kind, req.model, include_usage)
    events = state.pipeline.events(req)
    async with contextlib.aclosing(events):
        try:
            first = await anext(events)
        except StopAsyncIteration:
            raise ApiError(503, "no route produced an answer", code="no_route") from None
        except PromptTooLong as exc:
            raise ApiError(400, str(exc), param="messages", code="context_length_exceeded") from None
        except (NoRouteAvailable, BackendError) as exc:
            raise ApiError(503, f"no route can answer this request: {exc}", code="no_route") from None
        if not req.stream:
            # without streaming the pipeline yields no deltas: the first event is the answer
            answer = first if isinstance(first, Answer) else await _collect(events)
            state.metrics.observe_answer(answer, streamed=False)
            headers = {ROUTE_HEADER: answer.route.value, "x-request-id": request[REQUEST_ID]}
            return web.json_response(shape.full(answer), headers=headers)
        if first.route.value == "edge_local":
            shape.model = state.local_model
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                ROUTE_HEADER: first.route.value,
                "x-request-id": request[REQUEST_ID],
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
                    for chunk in shape.last_chunks(event):
                        await _send(response, chunk)
                    await response.write(b"data: [DONE]\n\n")
                    state.metrics.observe_answer(event, streamed=True)
                    break
                event = await anext(events)
        except (ConnectionResetError, StopAsyncIteration):
            raise
        except Exception as exc:
            # headers are gone: report in-band, the way the OpenAI API does mid-stream
            log.warning("stream %s failed after it started: %s", request[REQUEST_ID], exc)
            await _send(
                response, error_body(503, f"the answer was interrupted: {exc}", code="stream_interrupted")
            )
        await response.write_eof()
        return response


async def _collect(events: Any) -> Answer:
    async for event in events:
        if isinstance(event, Answer):
            return event
    raise ApiError(503, "no route produced an answer", code="no_route")


async def _send(response: web.StreamResponse, obj: dict[str, Any]) -> None:
    await response.write(b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n")
