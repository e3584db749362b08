"""Answering one escalation: pick the model, run its backend within the deadline, price it.

Every request runs as a ``TierPlan`` through ``FallbackChain``: a named model is a plan of that
one model; otherwise ``cloud_hub.tiers`` plans the tiers. The chain tries each model at most once,
keeps a circuit breaker per model, tries no other tier after a 4xx and never runs past the
deadline. Everything that can go wrong becomes a typed ``Error`` sent to the edge; nothing here
raises into the socket loop.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable

import msgspec

from cloud_hub.backends import Completion, HubBackendError
from cloud_hub.backends.replay import NotRecorded
from cloud_hub.registry import ModelRegistry, RegisteredModel
from cloud_hub.tiers import TierChoiceError, TierChooser, TierPlan, wants_choice
from shared.errors import StreamInterrupted
from shared.routing import fallback
from shared.wire import Body, Error, Escalate, Reply, ReplyChunk, Scalar, TraceStep

log = logging.getLogger(__name__)

Send = Callable[[Body], Awaitable[None]]


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
        req = _greedy_if_top_p_zero(req)
        remaining = req.deadline - time.time()
        if remaining <= 0:
            await send(_deadline_error(req, "the deadline had passed when the request arrived"))
            return
        try:
            plan = self._plan(req)
        except TierChoiceError as exc:
            await send(Error(req.request_id, "unknown_model", str(exc)))
            return
        await send(await self._run(req, plan, remaining, edge_id, send))

    def _plan(self, req: Escalate) -> TierPlan:
        """The models to try: the one the request names, else the tiers' choice."""
        if req.model not in self.registry.names and wants_choice(req.model):
            return self.tiers.plan(req)
        model = self.registry.resolve(req.model)
        if model is None:
            known = ", ".join(self.registry.names)
            raise TierChoiceError(f"no model {req.model!r} on this hub; known: {known}")
        return TierPlan((model,), (), f"the request named {model.entry.name}", {})

    async def _run(
        self, req: Escalate, plan: TierPlan, remaining: float, edge_id: str, send: Send
    ) -> Reply | Error:
        """The plan's first answer, or the error that ends the request; only chunks are sent here."""
        by_name = {m.entry.name: m for m in plan.targets}

        async def attempt(name: str, _left: float) -> tuple[Completion, float]:
            started = time.perf_counter()
            model = by_name[name]
            try:
                if req.stream:
                    result = await self._stream(req, model, send)
                else:
                    result = await model.backend.generate(req.messages, req.params)
            except StreamInterrupted:
                self.chain.breaker(name).record_failure()
                raise
            except Exception as exc:  # a bug in one backend must cost one attempt, not the hub
                declined = isinstance(exc, NotRecorded)
                level = logging.INFO if declined else logging.WARNING
                # a traceback only for what no backend meant to raise
                unexpected = not isinstance(exc, HubBackendError)
                log.log(level, "request %s: %s failed: %s", req.request_id, name, exc, exc_info=unexpected)
                status = exc.status if isinstance(exc, HubBackendError) else None
                raise fallback.AttemptFailed(
                    f"{type(exc).__name__}: {exc}", status, declined=declined, retryable=_retryable(exc)
                ) from exc
            return result, time.perf_counter() - started

        try:
            done = await self.chain.run(
                [m.entry.name for m in plan.targets], attempt, time.monotonic() + remaining
            )
        except fallback.AttemptFailed as exc:  # a 4xx: the request is wrong wherever it goes
            return Error(req.request_id, "invalid_request", str(exc))
        except StreamInterrupted as exc:
            return Error(req.request_id, "backend_error", str(exc), retryable=exc.retryable)
        except fallback.AllTargetsFailed as exc:
            if exc.attempts and exc.attempts[-1].outcome in ("timeout", "no_time"):
                log.info("request %s from %s dropped: deadline", req.request_id, edge_id)
                return _deadline_error(req, f"no tier answered within the deadline: {exc}")
            return Error(
                req.request_id, "backend_error", f"every tier failed: {exc}", retryable=exc.retryable
            )
        return self._answer(req, plan, done, edge_id)

    def _answer(
        self,
        req: Escalate,
        plan: TierPlan,
        done: fallback.FallbackResult[tuple[Completion, float]],
        edge_id: str,
    ) -> Reply:
        """The reply of the model that answered, its trace telling the plan and what fell through."""
        result, seconds = done.value
        model = next(m for m in plan.targets if m.entry.name == done.target)
        reply = self._reply(req, model, result, seconds, edge_id)
        failed = [a.to_trace_step() for a in done.attempts if a.outcome != "ok"]
        [answer] = reply.trace
        detail = dict(answer.detail, attempts=len(done.attempts))
        if done.target in plan.predicted:
            detail["p_success"] = round(plan.predicted[done.target], 4)
        fell = f"; fell through {len(failed)} tier(s) that did not answer" if failed else ""
        why = f"{answer.reason}; {plan.reason}{fell}"
        answer = TraceStep(answer.stage, answer.decision, why, answer.elapsed_ms, detail)
        return msgspec.structs.replace(reply, trace=[*plan.steps, *failed, answer])

    async def _stream(self, req: Escalate, model: RegisteredModel, send: Send) -> Completion:
        """Chunks sent as they come, then the final result. A failure once a chunk is out is a
        ``StreamInterrupted``: the edge holds part of this model's answer, so no other may follow."""
        seq = 0
        try:
            async for item in model.backend.stream(req.messages, req.params):
                if isinstance(item, Completion):
                    return item
                chunk = ReplyChunk(req.request_id, seq, item, model.route.value, model.entry.name)
                await send(chunk)
                seq += 1
            raise HubBackendError("stream ended without a final result", retryable=True)
        except Exception as exc:
            if not seq:
                raise
            name = model.entry.name
            raise StreamInterrupted(f"{name} failed mid-stream: {exc}", retryable=_retryable(exc)) from exc

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
    if not (math.isfinite(p.top_p) and 0.0 <= p.top_p <= 1.0):
        return f"top_p must be within [0, 1], got {p.top_p}"
    return ""


def _greedy_if_top_p_zero(req: Escalate) -> Escalate:
    """``top_p: 0`` (valid for OpenAI and the edge) keeps only the likeliest token: greedy decoding,
    sent as temperature 0 because backends such as vLLM take top_p only within (0, 1]."""
    if req.params.top_p != 0.0:
        return req
    params = msgspec.structs.replace(req.params, temperature=0.0, top_p=1.0)
    return msgspec.structs.replace(req, params=params)


def _retryable(exc: Exception) -> bool:
    """A backend's own word on retrying; an unexpected failure may well pass."""
    return exc.retryable if isinstance(exc, HubBackendError) else True


def _deadline_error(req: Escalate, why: str) -> Error:
    return Error(request_id=req.request_id, code="deadline_exceeded", message=why, retryable=False)
