"""Answering one escalation: pick the model, run its backend within the deadline, price it.

Everything that can go wrong becomes a typed ``Error`` sent to the edge; nothing here raises into
the socket loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

from cloud_hub.backends import BackendError, Completion
from cloud_hub.registry import ModelRegistry, RegisteredModel
from shared.wire import Body, Error, Escalate, Reply, ReplyChunk, TraceStep

log = logging.getLogger(__name__)

Send = Callable[[Body], Awaitable[None]]


class Dispatcher:
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    async def handle(self, req: Escalate, edge_id: str, send: Send) -> None:
        problem = _invalid(req)
        if problem:
            await send(Error(request_id=req.request_id, code="invalid_request", message=problem))
            return
        remaining = req.deadline - time.time()
        if remaining <= 0:
            await send(_deadline_error(req, "the deadline had passed when the request arrived"))
            return
        model = self.registry.resolve(req.model)
        if model is None:
            await send(
                Error(
                    request_id=req.request_id,
                    code="unknown_model",
                    message=f"no model {req.model!r} on this hub; known: {', '.join(self.registry.names)}",
                )
            )
            return
        started = time.perf_counter()
        try:
            async with asyncio.timeout(remaining):
                if req.stream:
                    result = await self._stream(req, model, send)
                else:
                    result = await model.backend.generate(req.messages, req.params)
        except TimeoutError:
            log.info("request %s from %s dropped: deadline", req.request_id, edge_id)
            await send(_deadline_error(req, f"{model.entry.name} did not finish within the deadline"))
            return
        except BackendError as exc:
            log.warning("request %s: %s backend failed: %s", req.request_id, model.entry.backend, exc)
            await send(Error(req.request_id, "backend_error", str(exc), retryable=exc.retryable))
            return
        except Exception as exc:
            # A bug in one backend must cost one request, not the hub.
            log.exception("request %s: unexpected backend failure", req.request_id)
            await send(Error(req.request_id, "backend_error", f"{type(exc).__name__}: {exc}", retryable=True))
            return
        await send(self._reply(req, model, result, time.perf_counter() - started, edge_id))

    async def _stream(self, req: Escalate, model: RegisteredModel, send: Send) -> Completion:
        seq = 0
        async for item in model.backend.stream(req.messages, req.params):
            if isinstance(item, Completion):
                return item
            await send(ReplyChunk(request_id=req.request_id, seq=seq, delta=item))
            seq += 1
        raise BackendError("stream ended without a final result", retryable=True)

    def _reply(
        self, req: Escalate, model: RegisteredModel, result: Completion, seconds: float, edge_id: str
    ) -> Reply:
        entry = model.entry
        why = f"{entry.backend} backend serves {entry.name} ({entry.tier.value} tier)"
        if not req.model:
            why += "; no model named, hub default"
        step = TraceStep(
            stage=model.route.value,
            decision="answer",
            reason=why,
            elapsed_ms=round(seconds * 1000, 3),
            detail={"backend": entry.backend, "model": entry.name, "tier": entry.tier.value, "edge": edge_id},
        )
        return Reply(
            request_id=req.request_id,
            text=result.text,
            model=entry.name,
            route=model.route.value,
            finish_reason=result.finish_reason,
            usage=result.usage,
            cost_usd=entry.cost.estimate(result.usage.prompt_tokens, result.usage.completion_tokens, seconds),
            trace=[step],
        )


def _invalid(req: Escalate) -> str:
    """Why a well-typed request still cannot be served, or "" when it can."""
    p = req.params
    if not math.isfinite(req.deadline):
        return "deadline must be a finite epoch time"
    if not req.messages:
        return "messages must not be empty"
    if p.max_tokens < 1:
        return f"max_tokens must be at least 1, got {p.max_tokens}"
    if not (math.isfinite(p.temperature) and 0.0 <= p.temperature <= 2.0):
        return f"temperature must be within [0, 2], got {p.temperature}"
    if not (math.isfinite(p.top_p) and 0.0 < p.top_p <= 1.0):
        return f"top_p must be within (0, 1], got {p.top_p}"
    return ""


def _deadline_error(req: Escalate, why: str) -> Error:
    return Error(request_id=req.request_id, code="deadline_exceeded", message=why, retryable=False)
