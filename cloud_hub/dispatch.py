"""Answering one escalation: pick the model, run its backend within the deadline, price it.

A named model is served as named. Otherwise ``cloud_hub.tiers`` plans the tiers and the plan runs
through ``FallbackChain``: each model at most once, a circuit breaker per model, no other tier after
a 4xx, never past the deadline. Everything that can go wrong becomes a typed ``Error`` sent to the
edge; nothing here raises into the socket loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

import msgspec

from cloud_hub.backends import BackendError, Completion
from cloud_hub.backends.replay import NotRecorded
from cloud_hub.registry import ModelRegistry, RegisteredModel
from cloud_hub.tiers import TierChoiceError, TierChooser, TierPlan, wants_choice
from shared.routing import fallback
from shared.wire import Body, Error, Escalate, Reply, ReplyChunk, Scalar, TraceStep

log = logging.getLogger(__name__)

Send = Callable[[Body], Awaitable[None]]


class _StreamBroken(Exception):
    """A model failed after some of its answer reached the edge: no other tier can take over."""


class Dispatcher:
    def __init__(
        self,
        registry: ModelRegistry,
        tiers: TierChooser | None = None,
        chain: fallback.FallbackChain | None = None,
    ) -> None:
        self.registry = registry
        self.tiers = tiers or TierChooser.calibrated(registry)
        # one chain for the hub's lifetime: its circuit breakers remember each model's failures
        self.chain = chain or fallback.FallbackChain()

    async def handle(self, req: Escalate, edge_id: str, send: Send) -> None:
        problem = _invalid(req)
        if problem:
            await send(Error(request_id=req.request_id, code="invalid_request", message=problem))
            return
        remaining = req.deadline - time.time()
        if remaining <= 0:
            await send(_deadline_error(req, "the deadline had passed when the request arrived"))
            return
        if req.model not in self.registry.names and wants_choice(req.model):
            try:
                plan = self.tiers.plan(req)
            except TierChoiceError as exc:
                await send(Error(req.request_id, "unknown_model", str(exc)))
                return
            await self._run_plan(req, plan, remaining, edge_id, send)
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

    async def _run_plan(
        self, req: Escalate, plan: TierPlan, remaining: float, edge_id: str, send: Send
    ) -> None:
        by_name = {m.entry.name: m for m in plan.targets}
        retryable: list[bool] = []
        streamed: list[bool] = []

        async def attempt(name: str, _left: float) -> tuple[Completion, float]:
            started = time.perf_counter()
            model = by_name[name]
            try:
                if req.stream:
                    result = await self._stream(req, model, send, streamed)
                else:
                    result = await model.backend.generate(req.messages, req.params)
            except Exception as exc:
                if streamed:
                    self.chain.breaker(name).record_failure()
                    raise _StreamBroken(f"{name} failed mid-stream: {exc}") from exc
                ok_retry = exc.retryable if isinstance(exc, BackendError) else True
                retryable.append(ok_retry)
                status = exc.status if isinstance(exc, BackendError) else None
                declined = isinstance(exc, NotRecorded)
                level = logging.INFO if declined else logging.WARNING
                log.log(level, "request %s: %s failed: %s", req.request_id, name, exc)
                raise fallback.BackendError(
                    f"{type(exc).__name__}: {exc}", status, declined=declined
                ) from exc
            return result, time.perf_counter() - started

        try:
            done = await self.chain.run(
                [m.entry.name for m in plan.targets], attempt, time.monotonic() + remaining
            )
        except fallback.BackendError as exc:  # a 4xx: the request is wrong wherever it goes
            await send(Error(req.request_id, "invalid_request", str(exc)))
            return
        except _StreamBroken as exc:
            await send(Error(req.request_id, "backend_error", str(exc), retryable=False))
            return
        except fallback.AllTargetsFailed as exc:
            if exc.attempts and exc.attempts[-1].outcome in ("timeout", "no_time"):
                await send(_deadline_error(req, f"no tier answered within the deadline: {exc}"))
            else:
                message = f"every tier failed: {exc}"
                await send(Error(req.request_id, "backend_error", message, retryable=any(retryable)))
            return
        result, seconds = done.value
        model = by_name[done.target]
        reply = self._reply(req, model, result, seconds, edge_id)
        failed = [a.to_trace_step() for a in done.attempts if a.outcome != "ok"]
        [answer] = reply.trace
        detail = dict(answer.detail, attempts=len(done.attempts))
        if done.target in plan.predicted:
            detail["p_success"] = round(plan.predicted[done.target], 4)
        fell = f"; fell through {len(failed)} tier(s) that did not answer" if failed else ""
        why = f"{answer.reason}; {plan.reason}{fell}"
        answer = TraceStep(answer.stage, answer.decision, why, answer.elapsed_ms, detail)
        trace = [*plan.steps, *failed, answer]
        await send(msgspec.structs.replace(reply, trace=trace))

    async def _stream(
        self, req: Escalate, model: RegisteredModel, send: Send, streamed: list[bool] | None = None
    ) -> Completion:
        seq = 0
        async for item in model.backend.stream(req.messages, req.params):
            if isinstance(item, Completion):
                return item
            await send(ReplyChunk(request_id=req.request_id, seq=seq, delta=item, route=model.route.value))
            if streamed is not None and not streamed:
                streamed.append(True)
            seq += 1
        raise BackendError("stream ended without a final result", retryable=True)

    def _reply(
        self, req: Escalate, model: RegisteredModel, result: Completion, seconds: float, edge_id: str
    ) -> Reply:
        entry = model.entry
        why = f"{entry.backend} backend serves {entry.name} ({entry.tier.value} tier)"
        if not req.model:
            why += "; no model named, hub default"
        detail: dict[str, Scalar] = {
            "backend": entry.backend,
            "model": entry.name,
            "tier": entry.tier.value,
            "edge": edge_id,
        }
        if entry.backend == "replay":
            # a benchmark client grades a replayed answer by its recorded score, read from here
            why += "; a recorded real answer, replayed"
            detail.update(
                replayed=True,
                recorded_model=result.recorded_model,
                recorded_score=result.recorded_score,
                recorded_cost=result.cost_usd is not None,
            )
        step = TraceStep(
            stage=model.route.value,
            decision="answer",
            reason=why,
            elapsed_ms=round(seconds * 1000, 3),
            detail=detail,
        )
        if result.cost_usd is not None:
            cost = result.cost_usd
        else:
            cost = entry.cost.estimate(result.usage.prompt_tokens, result.usage.completion_tokens, seconds)
        return Reply(
            request_id=req.request_id,
            text=result.text,
            model=entry.name,
            route=model.route.value,
            finish_reason=result.finish_reason,
            usage=result.usage,
            cost_usd=cost,
            trace=[step],
        )


def _invalid(req: Escalate) -> str:
    """Why a well-typed request still cannot be served, or "" when it can."""
    p = req.params
    if not math.isfinite(req.deadline):
        return "deadline must be a finite epoch time"
    if not req.messages:
        return "messages must not be empty"
    if req.quality_target is not None and not (0.0 < req.quality_target <= 1.0):
        return f"quality_target must be within (0, 1], got {req.quality_target}"
    if p.max_tokens < 1:
        return f"max_tokens must be at least 1, got {p.max_tokens}"
    if not (math.isfinite(p.temperature) and 0.0 <= p.temperature <= 2.0):
        return f"temperature must be within [0, 2], got {p.temperature}"
    if not (math.isfinite(p.top_p) and 0.0 < p.top_p <= 1.0):
        return f"top_p must be within (0, 1], got {p.top_p}"
    return ""


def _deadline_error(req: Escalate, why: str) -> Error:
    return Error(request_id=req.request_id, code="deadline_exceeded", message=why, retryable=False)
