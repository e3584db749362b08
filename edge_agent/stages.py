"""Adapters that plug the cache service and the telemetry recorder into the pipeline.

The pipeline only knows its small protocols (``AnswerCache``, ``OutcomeSink``); these adapters
translate to what ``edge_agent.cache`` and ``edge_agent.telemetry`` expose, so either side can
change without touching the routing code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from edge_agent.cache.keys import CacheRequest
from edge_agent.cache.service import CacheService
from edge_agent.request import Answer, CacheHit, InferenceRequest, Outcome
from edge_agent.telemetry.delivery import TelemetryDeliverer
from edge_agent.telemetry.recorder import TelemetryRecorder
from shared.taxonomy import Route
from shared.telemetry import TelemetryEvent
from shared.wire import Scalar, TraceStep

log = logging.getLogger(__name__)

_CACHE_ROUTES = {Route.EXACT_CACHE.value: Route.EXACT_CACHE, Route.SEMANTIC_CACHE.value: Route.SEMANTIC_CACHE}


class CacheStage:
    """``AnswerCache`` over ``CacheService``: chat requests only; stores answers worth reusing.

    The exact stage is one indexed SQLite read (tens of microseconds), so it runs on the event
    loop: a hop to a worker thread would cost more than the read. The semantic stage embeds text
    and scans vectors, so it runs in a worker thread, one at a time, as do stores.
    """

    def __init__(self, service: CacheService) -> None:
        self.service = service
        self._lock = asyncio.Lock()

    @staticmethod
    def _key(req: InferenceRequest) -> CacheRequest | None:
        if req.prompt is not None or not req.messages:
            return None  # legacy completions are raw text continuations, not questions
        return CacheRequest(tenant=req.ctx.tenant, model=req.model, messages=req.messages, params=req.params)

    async def lookup(self, req: InferenceRequest) -> tuple[CacheHit | None, Sequence[TraceStep]]:
        key = self._key(req)
        if key is None:
            return None, [TraceStep(Route.EXACT_CACHE, "skip", "text completions are not cached")]
        result = self.service.lookup_exact(key)
        if not result.hit and self.service.semantic_blocks:
            async with self._lock:
                result = await asyncio.to_thread(self.service.lookup_semantic, key, result)
        elif not result.hit and self.service.settings.enabled:
            result = self.service.lookup_semantic(key, result)
        found = result.answer
        if found is None:
            return None, result.trace
        route = _CACHE_ROUTES.get(found.stage, Route.EXACT_CACHE)
        return CacheHit(found.text, found.model, route), result.trace

    async def store(self, req: InferenceRequest, answer: Answer) -> None:
        key = self._key(req)
        # a fallback answer is what the policy judged not good enough: never make it reusable
        if key is None or answer.fallback:
            return
        async with self._lock:
            await asyncio.to_thread(self.service.store, key, answer.text, answer.model)


class TelemetrySink:
    """``OutcomeSink`` that records one telemetry event per answered request."""

    def __init__(self, recorder: TelemetryRecorder) -> None:
        self.recorder = recorder

    def __call__(self, outcome: Outcome) -> None:
        req, answer = outcome.request, outcome.answer
        last_user = next((m.content for m in reversed(req.messages) if m.role == "user"), req.prompt)
        decided = _edge_policy(answer.trace)
        event = TelemetryEvent(
            response_id=req.ctx.request_id,
            tenant=req.ctx.tenant_hash,
            operation="chat" if req.prompt is None else "text_completion",
            route=answer.route.value,
            request_model=req.model,
            response_model=answer.model,
            input_tokens=answer.usage.prompt_tokens,
            output_tokens=answer.usage.completion_tokens,
            ttft_s=outcome.ttft_s,
            latency_s=outcome.latency_s,
            finish_reason=answer.finish_reason,
            streamed=req.stream,
            cost_usd=answer.cost_usd,
            cache_similarity=_similarity(answer.trace),
            local_confidence=answer.confidence,
            escalation_reason=answer.escalation_reason,
            fallback=answer.fallback,
            regenerate_flag=req.regenerate,
            quality_target=req.ctx.quality_target,
            # which policy arm decided (the hub's canary compares arms) and what the heads saw
            policy_version=str(decided.get("policy_version") or ""),
            canary=decided.get("canary") is True,
            task=str(decided.get("task") or "other"),
            domain=str(decided.get("domain") or "general"),
            completion=answer.text,
        )
        self.recorder.record(event, prompt=last_user)


def _edge_policy(trace: Sequence[TraceStep]) -> dict[str, Scalar]:
    """Detail of the edge's own escalation decision (the first ``policy`` step; the hub's come later)."""
    for step in trace:
        if step.stage == "policy" and step.decision in ("answer", "escalate"):
            return dict(step.detail)
    return {}


def _similarity(trace: Sequence[TraceStep]) -> float | None:
    for step in trace:
        if step.stage in _CACHE_ROUTES and step.decision == "hit":
            value = step.detail.get("similarity")
            return float(value) if isinstance(value, int | float) else None
    return None


class DeliveryResource:
    """Runs telemetry delivery for the app's lifetime; the spool keeps what is not yet sent."""

    def __init__(self, deliverer: TelemetryDeliverer) -> None:
        self.deliverer = deliverer

    async def start(self) -> None:
        self.deliverer.start()

    async def close(self) -> None:
        await self.deliverer.close()


class ClosingResource:
    """Closes a synchronous resource (a SQLite-backed store) when the app shuts down."""

    def __init__(self, closeable: SupportsClose) -> None:
        self.closeable = closeable

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await asyncio.to_thread(self.closeable.close)


class SupportsClose(Protocol):
    def close(self) -> None: ...
