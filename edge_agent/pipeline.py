"""The route decision for one request.

Order: caches → forced route → local draft → policy → finish locally or escalate → fallback.
Everything is one async event stream (``Delta``... then one ``Answer``); the non-streaming API
collects it, so both paths take identical decisions. Local text is only released after the
policy has accepted the draft, so a client never sees a local draft that the hub then replaces.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import replace

from edge_agent.backends.base import (
    BackendError,
    Confidence,
    GenerationEnd,
    GenerationJob,
    LocalBackend,
    PromptTooLong,
    TokenStep,
)
from edge_agent.request import (
    Answer,
    AnswerCache,
    Delta,
    Draft,
    EscalationPolicy,
    HubClient,
    InferenceRequest,
    NoRouteAvailable,
    Outcome,
    OutcomeSink,
)
from shared.cache_text import model_family
from shared.config import CostModel
from shared.taxonomy import HUB_ROUTES, Route
from shared.wire import Classification, Escalate, Reply, ReplyChunk, Scalar, TraceStep, Usage

log = logging.getLogger(__name__)

_HUB_ROUTE_VALUES = frozenset(r.value for r in HUB_ROUTES)

Event = Delta | Answer


class HubStreamBroken(Exception):
    """The hub failed after part of its answer was already sent to the client."""


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


def _hub_route(value: str) -> Route:
    """The hub tier a reply or chunk names; anything else (an older hub sends "") is the OSS tier."""
    return Route(value) if value in _HUB_ROUTE_VALUES else Route.HUB_OSS


class _LocalRun:
    """One local generation, consumed in two phases: the draft, then the rest.

    ``carried`` resumes an earlier run that was stopped after its draft: its tokens go back in as
    a prefix, so the resumed answer continues the draft instead of starting over.
    """

    def __init__(self, backend: LocalBackend, job: GenerationJob, carried: _LocalRun | None = None) -> None:
        self.tokens: list[int] = []
        self.pieces: list[str] = []
        self.confidence = Confidence()
        if carried is not None:
            self.tokens = list(carried.tokens)
            self.pieces = list(carried.pieces)
            self.confidence.extend(carried.confidence)
            job = replace(job, prefix_tokens=tuple(carried.tokens))
        self._events = backend.stream(job)
        self.end: GenerationEnd | None = None
        self.started = time.perf_counter()

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    async def _next(self) -> str:
        try:
            event = await anext(self._events)
        except StopAsyncIteration:
            raise BackendError("the local model stopped without finishing its answer") from None
        if isinstance(event, TokenStep):
            self.tokens.append(event.token)
            self.confidence.add(event.logprob)
        else:
            self.end = event
        self.pieces.append(event.text)
        return event.text

    async def draft(self, n_tokens: int) -> Draft:
        while self.end is None and len(self.tokens) < n_tokens:
            await self._next()
        return Draft(self.text, self.confidence, finished=self.end is not None)

    async def rest(self) -> AsyncIterator[str]:
        while self.end is None:
            text = await self._next()
            if text:
                yield text

    async def close(self) -> None:
        closer = getattr(self._events, "aclose", None)
        if closer is not None:
            await closer()


class Pipeline:
    def __init__(
        self,
        backend: LocalBackend,
        policy: EscalationPolicy,
        *,
        hub: HubClient | None = None,
        local_cost: CostModel | None = None,
        draft_tokens: int = 24,
        hub_timeout_s: float = 60.0,
        caches: Sequence[AnswerCache] = (),
        sink: OutcomeSink | None = None,
    ) -> None:
        self.backend = backend
        self.policy = policy
        self.hub = hub
        self.local_cost = local_cost or CostModel()
        self.draft_tokens = draft_tokens
        self.hub_timeout_s = hub_timeout_s
        self.caches = list(caches)
        self.sink = sink

    async def answer(self, req: InferenceRequest) -> Answer:
        async for event in self.events(req):
            if isinstance(event, Answer):
                return event
        raise NoRouteAvailable("the pipeline ended without an answer")

    async def events(self, req: InferenceRequest) -> AsyncGenerator[Event, None]:
        first: float | None = None
        async for event in self._route(req, []):
            if first is None:
                first = time.perf_counter()
            if isinstance(event, Answer):
                await self._finish(req, event, first)
            yield event

    async def _finish(self, req: InferenceRequest, answer: Answer, first: float | None) -> None:
        if not answer.route.is_cache and not req.cache_bypass:
            for cache in self.caches:
                try:
                    await cache.store(req, answer)
                except Exception:  # a cache must never fail an answer that already exists
                    log.exception("cache store failed")
        if self.sink is not None:
            started = req.ctx.started
            outcome = Outcome(
                req, answer, time.perf_counter() - started, None if first is None else first - started
            )
            try:
                self.sink(outcome)
            except Exception:
                log.exception("telemetry sink failed")

    async def _route(self, req: InferenceRequest, trace: list[TraceStep]) -> AsyncIterator[Event]:
        if req.cache_bypass:
            trace.append(TraceStep("cache", "bypass", f"caches bypassed by the request {req.cache_source}"))
        for cache in () if req.cache_bypass else self.caches:
            started = time.perf_counter()
            try:
                hit, steps = await cache.lookup(req)
            except Exception as exc:  # a broken cache costs a lookup, never the request
                log.exception("cache lookup failed")
                trace.append(TraceStep("cache", "error", f"{type(exc).__name__}: {exc}", _ms(started)))
                continue
            trace.extend(steps)
            if hit is not None:
                if req.stream and hit.text:
                    yield Delta(hit.text, hit.route)
                yield Answer(hit.text, "stop", Usage(), hit.route, hit.model, tuple(trace), cost_usd=0.0)
                return
        if req.force == "hub":
            trace.append(
                TraceStep("policy", "escalate", f"route forced to the hub by the request {req.force_source}")
            )
            async for event in self._escalate(req, trace, None, "route forced by the request"):
                yield event
            return
        early = self.policy.before_draft(req) if req.force is None and not self._hub_unavailable() else None
        if early is not None and early.escalate:
            trace.append(TraceStep("policy", "escalate", early.reason, 0.0, early.detail))
            async for event in self._escalate(req, trace, None, early.reason, early.classification):
                yield event
            return
        run = _LocalRun(self.backend, GenerationJob(req.params, req.messages, req.prompt))
        try:
            if req.force == "edge_local":
                trace.append(
                    TraceStep(
                        "policy", "answer", f"route forced to edge_local by the request {req.force_source}"
                    )
                )
                async for event in self._finish_local(req, trace, run, ""):
                    yield event
                return
            try:
                draft = await run.draft(self.draft_tokens)
            except PromptTooLong:
                raise
            except BackendError as exc:
                trace.append(TraceStep(Route.EDGE_LOCAL, "error", str(exc), _ms(run.started)))
                async for event in self._escalate(req, trace, None, "the local model failed"):
                    yield event
                return
            decision = self.policy.decide(req, draft)
            trace.append(
                TraceStep(
                    "policy",
                    "escalate" if decision.escalate else "answer",
                    decision.reason,
                    _ms(run.started),
                    decision.detail,
                )
            )
            if not decision.escalate:
                async for event in self._finish_local(req, trace, run, ""):
                    yield event
                return
            unavailable = self._hub_unavailable()
            if unavailable:
                trace.append(TraceStep("hub", "fallback", unavailable))
                async for event in self._finish_local(req, trace, run, decision.reason, fallback=True):
                    yield event
                return
            if run.end is None:
                await run.close()  # frees the model for other requests while the hub works
            async for event in self._escalate(req, trace, run, decision.reason, decision.classification):
                yield event
        finally:
            await run.close()

    def _hub_unavailable(self) -> str:
        if self.hub is None:
            return "no hub configured: answering locally"
        if not self.hub.connected:
            return "hub not connected: answering locally"
        return ""

    async def _finish_local(
        self,
        req: InferenceRequest,
        trace: list[TraceStep],
        run: _LocalRun,
        escalation_reason: str,
        *,
        fallback: bool = False,
    ) -> AsyncIterator[Event]:
        if req.stream:
            if run.text:
                yield Delta(run.text, Route.EDGE_LOCAL)
            async for text in run.rest():
                yield Delta(text, Route.EDGE_LOCAL)
        else:
            async for _ in run.rest():
                pass
        end = run.end
        assert end is not None
        conf = run.confidence
        cost = self.local_cost.estimate(end.prompt_tokens, end.completion_tokens)
        detail: dict[str, Scalar] = {
            "model": self.backend.model_name,
            "mean_prob": round(conf.mean_prob, 4),
            "min_prob": round(conf.min_prob, 4),
            "tokens": end.completion_tokens,
            "cost_usd": cost,
            "token_probs": ",".join(f"{p:g}" for p in conf.probs(64)),
        }
        reason = "fallback after a failed escalation" if fallback else "answered by the local model"
        trace.append(TraceStep(Route.EDGE_LOCAL, "answer", reason, _ms(run.started), detail))
        yield Answer(
            text=run.text,
            finish_reason=end.finish_reason,
            usage=Usage(end.prompt_tokens, end.completion_tokens),
            route=Route.EDGE_LOCAL,
            model=self.backend.model_name,
            trace=tuple(trace),
            confidence=conf.mean_prob,
            cost_usd=cost,
            fallback=fallback,
            escalation_reason=escalation_reason,
        )

    async def _escalate(
        self,
        req: InferenceRequest,
        trace: list[TraceStep],
        run: _LocalRun | None,
        reason: str,
        classification: Classification | None = None,
    ) -> AsyncIterator[Event]:
        started = time.perf_counter()
        failure = self._hub_unavailable()
        error = ""
        if not failure:
            esc = Escalate(
                request_id=req.ctx.request_id,
                model=req.hub_model,
                messages=req.hub_messages,
                params=req.params,
                deadline=time.time() + self.hub_timeout_s,
                stream=req.stream,
                draft=run.text if run is not None else None,
                confidence=run.confidence.mean_prob if run is not None and run.confidence.count else None,
                classification=classification,
                quality_target=req.ctx.quality_target,
                tenant=req.ctx.tenant_hash,
                # chat questions may be shared by the hub's global cache under the family the
                # edge's own cache uses; raw completion prompts and bypassed requests never are
                cache_family=model_family(req.model) if req.prompt is None and not req.cache_bypass else "",
                cache_bypass=req.cache_bypass,
            )
            streamed: list[str] = []
            try:
                reply: Reply | None = None
                if req.stream:
                    async for item in self._hub_stream(esc):
                        if isinstance(item, Reply):
                            reply = item
                        elif item.delta:
                            streamed.append(item.delta)
                            yield Delta(item.delta, _hub_route(item.route))
                    if reply is None:
                        raise HubStreamBroken("the hub's stream ended without a final reply")
                else:
                    assert self.hub is not None
                    async with asyncio.timeout(self.hub_timeout_s):
                        reply = await self.hub.escalate(esc)
                yield self._hub_answer(req, trace, reply, run, reason, started, "".join(streamed))
                return
            except Exception as exc:
                if streamed:
                    raise HubStreamBroken(f"the hub failed mid-answer: {type(exc).__name__}: {exc}") from exc
                error = type(exc).__name__
                failure = f"hub failed ({error}: {exc}): answering locally"
        trace.append(TraceStep("hub", "fallback", failure, _ms(started), {"error": error} if error else {}))
        job = GenerationJob(req.params, req.messages, req.prompt)
        # a finished draft is already a whole answer; an unfinished one is resumed, not redone
        local = run if run is not None and run.end is not None else _LocalRun(self.backend, job, carried=run)
        try:
            async for event in self._finish_local(req, trace, local, reason, fallback=True):
                yield event
        except PromptTooLong:
            raise
        except BackendError as exc:
            raise NoRouteAvailable(f"{failure}; the local model failed too: {exc}") from exc
        finally:
            await local.close()

    async def _hub_stream(self, esc: Escalate) -> AsyncIterator[ReplyChunk | Reply]:
        assert self.hub is not None
        items = self.hub.stream(esc)
        try:
            while True:
                try:
                    async with asyncio.timeout(self.hub_timeout_s):
                        item = await anext(items)
                except StopAsyncIteration:
                    return
                yield item
                if isinstance(item, Reply):
                    return
        finally:
            closer = getattr(items, "aclose", None)
            if closer is not None:
                await closer()

    def _hub_answer(
        self,
        req: InferenceRequest,
        trace: list[TraceStep],
        reply: Reply,
        run: _LocalRun | None,
        reason: str,
        started: float,
        streamed: str,
    ) -> Answer:
        route = _hub_route(reply.route)
        draft_cost = self.local_cost.estimate(0, len(run.tokens)) if run is not None else 0.0
        trace.extend(reply.trace)
        detail: dict[str, Scalar] = {
            "model": reply.model,
            "cost_usd": reply.cost_usd,
            "draft_cost_usd": draft_cost,
        }
        why = f"the hub answered with {reply.model} on route {route.value}"
        trace.append(TraceStep("hub", "reply", why, _ms(started), detail))
        return Answer(
            text=reply.text or streamed,
            finish_reason=reply.finish_reason,
            usage=reply.usage,
            route=route,
            model=reply.model,
            trace=tuple(trace),
            confidence=run.confidence.mean_prob if run is not None and run.confidence.count else None,
            cost_usd=reply.cost_usd + draft_cost,
            escalation_reason=reason,
        )
