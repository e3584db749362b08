"""The pipeline's telemetry sink: one ``TelemetryEvent`` per answered request.

The pipeline only knows ``edge_agent.request.OutcomeSink``; this adapter reads what telemetry
needs out of an ``Outcome`` (the answer, its trace, the timings) and hands the event to the
recorder, which counts it and spools it for the hub.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge_agent.request import Outcome
from edge_agent.telemetry.recorder import TelemetryRecorder
from shared.taxonomy import Route
from shared.telemetry import TelemetryEvent
from shared.wire import Scalar, TraceStep

_CACHE_STAGES = frozenset({Route.EXACT_CACHE.value, Route.SEMANTIC_CACHE.value})
# ``error.type`` of a request whose client hung up (a timeout, usually) before its answer was ready
CLIENT_GONE = "client_disconnected"


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
            user=req.ctx.user_hash(req.user),
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
            # a route the client forced is not the router escalating
            escalation_reason="" if req.force is not None else answer.escalation_reason,
            route_forced=req.force_source if req.force is not None else "",
            cache_bypass=req.cache_bypass,
            fallback=answer.fallback,
            error_type=CLIENT_GONE if outcome.client_gone else "",
            regenerate_flag=req.regenerate,
            quality_target=req.ctx.quality_target,
            # which policy arm decided (the hub's canary compares arms) and what the heads saw
            policy_version=str(decided.get("policy_version") or ""),
            canary=decided.get("canary") is True,
            task=str(decided.get("task") or "other"),
            domain=str(decided.get("domain") or "general"),
            # only what the recorder keeps: with capture off it would copy the event to drop it
            completion=answer.text if self.recorder.capture_content or req.probe is not None else None,
            reference=req.probe[0] if req.probe is not None else None,
            reference_kind=req.probe[1] if req.probe is not None else "",
        )
        self.recorder.record(event, prompt=last_user)

    async def drain(self) -> None:
        """Wait until the events of every outcome seen so far are in the spool."""
        await self.recorder.drain()


def _edge_policy(trace: Sequence[TraceStep]) -> dict[str, Scalar]:
    """Detail of the edge's own escalation decision (the first ``policy`` step; the hub's come
    later), or of the classification a forced route got instead."""
    for step in trace:
        if (step.stage == "policy" and step.decision in ("answer", "escalate")) or (
            step.stage == "classify" and step.decision == "forced"
        ):
            return dict(step.detail)
    return {}


def _similarity(trace: Sequence[TraceStep]) -> float | None:
    for step in trace:
        if step.stage in _CACHE_STAGES and step.decision == "hit":
            value = step.detail.get("similarity")
            return float(value) if isinstance(value, int | float) else None
    return None
