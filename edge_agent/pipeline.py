"""The route decision for one request.

Order: caches → forced route → local draft → policy → finish locally or escalate → fallback.
Everything is one async event stream (``Delta``... then one ``Answer``); the non-streaming API
collects it, so both paths take identical decisions. Local text is only released after the
policy has accepted the draft, so a client never sees a local draft that the hub then replaces.

The answer is released first; its bookkeeping (telemetry, cache stores) follows in the background
(``edge_agent.bookkeeping``), carrying what each cache's lookup found to the same cache's store.

A tenant's budget is reserved before any route runs (``edge_agent.budgets``). Each local run and
escalation holds a place at its route's gate (``edge_agent.admission``): a full hub gate is a hub
that cannot be asked, so the request falls back locally, and is a 503 if that gate is full too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import AsyncExitStack, aclosing

from edge_agent.admission import Admission
from edge_agent.backends.base import BackendError, LocalBackend, PromptTooLong
from edge_agent.bookkeeping import Bookkeeping
from edge_agent.budgets import Budgets
from edge_agent.flight import Flight, abandoned, classify_forced
from edge_agent.hub_link.errors import HubRefused
from edge_agent.local_run import LocalRun
from edge_agent.local_run import elapsed_ms as _ms
from edge_agent.request import (
    Answer,
    AnswerCache,
    CacheHit,
    Decision,
    Delta,
    EscalationPolicy,
    HubClient,
    InferenceRequest,
    NoRouteAvailable,
    Outcome,
    OutcomeSink,
)
from shared.cache_text import model_family
from shared.config import CostModel
from shared.errors import StreamInterrupted
from shared.taxonomy import Route, hub_route
from shared.wire import Classification, Escalate, Reply, ReplyChunk, Scalar, TraceStep, Usage

log = logging.getLogger(__name__)

Event = Delta | Answer


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
        background_bookkeeping: bool = True,
        admission: Admission | None = None,
        budgets: Budgets | None = None,
    ) -> None:
        self.backend = backend
        self.policy = policy
        self.hub = hub
        self.local_cost = local_cost or CostModel()
        self.draft_tokens = draft_tokens
        self.hub_timeout_s = hub_timeout_s
        self.caches = list(caches)
        self.admission = admission or Admission()
        self.budgets = budgets
        # background off only for ``edge-agent bench answer``'s baseline: booked before release
        self.bookkeeping = Bookkeeping(self.caches, sink, background=background_bookkeeping)

    async def answer(self, req: InferenceRequest) -> Answer:
        async with aclosing(self.events(req)) as events:
            async for event in events:
                if isinstance(event, Answer):
                    return event
        raise NoRouteAvailable("the pipeline ended without an answer")

    async def events(self, req: InferenceRequest) -> AsyncGenerator[Event, None]:
        flight = Flight(req)
        events = self._routed(flight)
        if self.budgets is not None:
            may_escalate = self.hub is not None and req.force != "edge_local"
            events = self.budgets.metered(req, may_escalate, events, lambda: flight.asked_hub)
        async with aclosing(events):
            async for event in events:
                yield event

    async def _routed(self, flight: Flight) -> AsyncGenerator[Event, None]:
        try:
            async with aclosing(await self._choose(flight)) as events:
                async for event in events:
                    if flight.first_event is None:
                        flight.first_event = time.perf_counter()
                    if isinstance(event, Answer):
                        await self._account(flight, event)
                    yield event
        except (asyncio.CancelledError, GeneratorExit):
            # the client hung up (a timeout, usually) and its handler was cancelled before any
            # answer existed: telemetry still sees the request, as the failure it was
            if not flight.booked:
                abandoned(self.bookkeeping.sink, flight)
            raise

    async def drain(self) -> None:
        """Wait until the bookkeeping of every answer released so far has finished."""
        await self.bookkeeping.drain()

    async def aclose(self) -> None:
        """Drain the bookkeeping; later answers are booked before release. Idempotent."""
        await self.bookkeeping.aclose()

    async def _account(self, flight: Flight, answer: Answer) -> None:
        started = flight.req.ctx.started
        first = flight.first_event
        latency = time.perf_counter() - started
        outcome = Outcome(
            flight.req,
            answer,
            latency,
            None if first is None else first - started,
            client_gone=flight.req.ctx.client_gone(),
        )
        flight.booked = True
        await self.bookkeeping.book(outcome, flight.looked)

    # --- the route ----------------------------------------------------------------------------

    async def _choose(self, flight: Flight) -> AsyncGenerator[Event, None]:
        """The first decision: a cached answer, the hub without a draft, or a local draft first."""
        req, trace = flight.req, flight.trace
        hit = await self._lookup(flight)
        if hit is not None:
            return self._cached(flight, hit)
        flight.hub_down = self._hub_unavailable()
        if req.force is not None:
            classify_forced(self.policy, flight)
        if req.force == "hub":
            why = f"route forced to the hub by the request {req.force_source}"
            trace.append(TraceStep("policy", "escalate", why))
            return self._escalate(flight, None, "route forced by the request")
        early = self.policy.before_draft(req) if req.force is None and not flight.hub_down else None
        if early is not None and early.escalate:
            trace.append(TraceStep("policy", "escalate", early.reason, 0.0, early.detail))
            return self._escalate(flight, None, early.reason, early.classification)
        return self._local_first(flight)

    async def _lookup(self, flight: Flight) -> CacheHit | None:
        req, trace = flight.req, flight.trace
        if req.cache_bypass:
            trace.append(TraceStep("cache", "bypass", f"caches bypassed by the request {req.cache_source}"))
            return None
        for i, cache in enumerate(self.caches):
            started = time.perf_counter()
            try:
                looked = await cache.lookup(req)
            except Exception as exc:  # a broken cache costs a lookup, never the request
                log.exception("cache lookup failed")
                trace.append(TraceStep("cache", "error", f"{type(exc).__name__}: {exc}", _ms(started)))
                continue
            flight.looked[i] = looked
            trace.extend(looked.steps)
            if looked.hit is not None:
                return looked.hit
        return None

    async def _cached(self, flight: Flight, hit: CacheHit) -> AsyncGenerator[Event, None]:
        if flight.req.stream and hit.text:
            yield Delta(hit.text, hit.route, hit.model)
        yield Answer(hit.text, "stop", Usage(), hit.route, hit.model, tuple(flight.trace), cost_usd=0.0)

    def _hub_unavailable(self) -> str:
        if self.hub is None:
            return "no hub configured: answering locally"
        if not self.hub.connected:
            return "hub not connected: answering locally"
        return ""

    async def _local_first(self, flight: Flight) -> AsyncGenerator[Event, None]:
        """Draft locally and let the policy judge the draft: finish it here or escalate it."""
        req, trace = flight.req, flight.trace
        local: AsyncGenerator[Event, None] | None = None
        decision: Decision | None = None
        run = LocalRun(self.backend, flight.job, slot=self.admission.local())
        async with aclosing(run):
            if req.force == "edge_local":
                why = f"route forced to edge_local by the request {req.force_source}"
                trace.append(TraceStep("policy", "answer", why))
                local = self._finish_local(flight, run, "")
            else:
                decision = await self._judge_draft(flight, run)
                if decision is not None and not decision.escalate:
                    local = self._finish_local(flight, run, "")
                elif decision is not None and flight.hub_down:
                    trace.append(TraceStep("hub", "fallback", flight.hub_down))
                    local = self._finish_local(flight, run, decision.reason, fallback=True)
            if local is not None:
                async with aclosing(local):
                    async for event in local:
                        yield event
                return
        # the draft's run is closed by now, so the model serves other requests while the hub works
        if decision is None:
            escalation = self._escalate(flight, None, "the local model failed")
        else:
            escalation = self._escalate(flight, run, decision.reason, decision.classification)
        async with aclosing(escalation):
            async for event in escalation:
                yield event

    async def _judge_draft(self, flight: Flight, run: LocalRun) -> Decision | None:
        """The policy's verdict on the draft; ``None`` when the local model failed on it."""
        try:
            draft = await run.draft(self.draft_tokens)
        except PromptTooLong:
            raise
        except BackendError as exc:
            flight.trace.append(TraceStep(Route.EDGE_LOCAL, "error", str(exc), _ms(run.started)))
            return None
        decision = self.policy.decide(flight.req, draft)
        verdict = "escalate" if decision.escalate else "answer"
        flight.trace.append(TraceStep("policy", verdict, decision.reason, _ms(run.started), decision.detail))
        return decision

    async def _finish_local(
        self, flight: Flight, run: LocalRun, escalation_reason: str, *, fallback: bool = False
    ) -> AsyncGenerator[Event, None]:
        async with aclosing(run.rest()) as rest:
            if flight.req.stream:
                if run.text:
                    yield Delta(run.text, Route.EDGE_LOCAL)
                async for text in rest:
                    yield Delta(text, Route.EDGE_LOCAL)
            else:
                async for _ in rest:
                    pass
        yield run.answer(self.local_cost, flight.trace, escalation_reason, fallback=fallback)

    # --- escalation ---------------------------------------------------------------------------

    async def _escalate(
        self,
        flight: Flight,
        run: LocalRun | None,
        reason: str,
        classification: Classification | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Ask the hub, with the draft when there is one; answer locally when the hub cannot."""
        started = time.perf_counter()
        failure, error = flight.hub_down, ""
        slot, saturated = self.admission.hub() if not failure else (None, "")
        failure = failure or saturated
        if slot is not None:
            esc = self._escalation(flight.req, run, classification)
            streamed: list[str] = []
            try:
                async with aclosing(self._ask_hub(flight, esc, run, reason, streamed)) as answering:
                    async for event in answering:
                        yield event
                return
            except Exception as exc:
                if isinstance(exc, HubRefused):
                    raise  # an invalid request gets its 4xx, not a local answer
                if streamed:
                    raise StreamInterrupted(
                        f"the hub failed mid-answer: {type(exc).__name__}: {exc}"
                    ) from exc
                error = type(exc).__name__
                failure = f"hub failed ({error}: {exc}): answering locally"
            finally:
                slot.release()
        detail: dict[str, Scalar] = {"error": error} if error else {}
        flight.trace.append(TraceStep("hub", "fallback", failure, _ms(started), detail))
        async with aclosing(self._fall_back(flight, run, reason, failure)) as falling_back:
            async for event in falling_back:
                yield event

    def _escalation(
        self, req: InferenceRequest, run: LocalRun | None, classification: Classification | None
    ) -> Escalate:
        return Escalate(
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

    async def _ask_hub(
        self, flight: Flight, esc: Escalate, run: LocalRun | None, reason: str, streamed: list[str]
    ) -> AsyncGenerator[Event, None]:
        """The hub's answer; deltas first when streaming, each one also kept in ``streamed``."""
        assert self.hub is not None
        started = time.perf_counter()
        flight.asked_hub = True
        reply: Reply | None = None
        if flight.req.stream:
            async with aclosing(self._hub_stream(self.hub, esc)) as items:
                async for item in items:
                    if isinstance(item, Reply):
                        reply = item
                    elif item.delta:
                        streamed.append(item.delta)
                        yield Delta(item.delta, hub_route(item.route), item.model)
            if reply is None:
                raise StreamInterrupted("the hub's stream ended without a final reply")
        else:
            async with asyncio.timeout(self.hub_timeout_s):
                reply = await self.hub.escalate(esc)
        yield self._hub_answer(flight, reply, run, reason, started, "".join(streamed))

    async def _hub_stream(self, hub: HubClient, esc: Escalate) -> AsyncGenerator[ReplyChunk | Reply, None]:
        """The hub's stream up to its final reply, each item due within ``hub_timeout_s``."""
        async with aclosing(hub.stream(esc)) as items:
            while True:
                try:
                    async with asyncio.timeout(self.hub_timeout_s):
                        item = await anext(items)
                except StopAsyncIteration:
                    return
                yield item
                if isinstance(item, Reply):
                    return

    async def _fall_back(
        self, flight: Flight, run: LocalRun | None, reason: str, failure: str
    ) -> AsyncGenerator[Event, None]:
        """The local answer after the hub could not give one: a finished draft is already the
        whole answer; an unfinished one is resumed, not redone; without a draft, a fresh run."""
        async with AsyncExitStack() as stack:
            if run is None or run.end is None:
                fresh = LocalRun(self.backend, flight.job, run, slot=self.admission.local(fallback=True))
                run = await stack.enter_async_context(aclosing(fresh))
            try:
                async with aclosing(self._finish_local(flight, run, reason, fallback=True)) as local:
                    async for event in local:
                        yield event
            except PromptTooLong:
                raise
            except BackendError as exc:
                raise NoRouteAvailable(f"{failure}; the local model failed too: {exc}") from exc

    def _hub_answer(
        self,
        flight: Flight,
        reply: Reply,
        run: LocalRun | None,
        reason: str,
        started: float,
        streamed: str,
    ) -> Answer:
        route = hub_route(reply.route)
        draft_cost = self.local_cost.estimate(0, len(run.tokens)) if run is not None else 0.0
        trace = flight.trace
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
