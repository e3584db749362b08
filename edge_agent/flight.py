"""One request on its way through the pipeline, and the telemetry of the flights the usual
booking would miss.

``Flight`` is what every step of ``edge_agent.pipeline`` reads and adds to. An answered flight is
booked with its answer (``edge_agent.bookkeeping``); two kinds would reach telemetry short of
what it needs without the helpers here. A forced route skips the policy, so nothing would name
the prompt's domain: ``classify_forced`` asks the policy's heads for it, as a trace step that
decides nothing. A client that hangs up before any answer exists leaves nothing to book:
``abandoned`` tells the sink of it anyway, as the failure it was, on the route it waited for.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from edge_agent.backends.base import GenerationJob
from edge_agent.local_run import elapsed_ms as _ms
from edge_agent.request import (
    Answer,
    CacheLookup,
    EscalationPolicy,
    InferenceRequest,
    Outcome,
    OutcomeSink,
    PromptClassifier,
)
from shared.taxonomy import Route, Tier, hub_route
from shared.wire import Scalar, TraceStep, Usage

log = logging.getLogger(__name__)


@dataclass
class Flight:
    """One request on its way through the pipeline: what every step reads and adds to."""

    req: InferenceRequest
    trace: list[TraceStep] = field(default_factory=list)
    # by cache index: what each cache's lookup returned, handed back to the same cache's store
    looked: dict[int, CacheLookup] = field(default_factory=dict)
    hub_down: str = ""  # why the hub cannot be asked ("" when it can); checked once per request
    first_event: float | None = None
    asked_hub: bool = False  # an escalation went out (a budget charges it even without a reply)
    booked: bool = False  # its answer went to the bookkeeping

    @property
    def job(self) -> GenerationJob:
        return GenerationJob(self.req.params, self.req.messages, self.req.prompt)


def classify_forced(policy: EscalationPolicy, flight: Flight) -> None:
    """A forced route skips the policy, so telemetry would not know the prompt's domain: ask
    the policy's heads for it (when it has any), as a trace step that decides nothing."""
    if not isinstance(policy, PromptClassifier):
        return
    started = time.perf_counter()
    try:
        c = policy.classify(flight.req)
    except Exception as exc:  # telemetry detail only: never worth failing the request
        log.warning("classifying a forced request failed: %s", exc)
        return
    detail: dict[str, Scalar] = {"task": c.task, "domain": c.domain}
    why = "route forced: classified for telemetry only"
    flight.trace.append(TraceStep("classify", "forced", why, _ms(started), detail))


def abandoned(sink: OutcomeSink | None, flight: Flight) -> None:
    """Tell the sink (only: nothing goes into a cache) about a request that ended unanswered
    because its client left, on the route it was waiting for."""
    if sink is None:
        return
    route = pending_route(flight.req) if flight.asked_hub else Route.EDGE_LOCAL
    why = "the client hung up before the answer was ready"
    trace = (*flight.trace, TraceStep("client", "gone", why))
    answer = Answer("", "", Usage(), route, "", trace)
    latency = time.perf_counter() - flight.req.ctx.started
    try:
        sink(Outcome(flight.req, answer, latency, None, client_gone=True))
    except Exception:
        log.exception("telemetry sink failed")


def pending_route(req: InferenceRequest) -> Route:
    """The hub route an unanswered escalation was waiting on: the tier it asked for (``tier:<tier>``),
    else the hub's default, as ``hub_route`` reads an unnamed tier."""
    name, tier = req.hub_model.partition("tier:")[::2]
    if not name and tier in {t.value for t in Tier}:
        return Tier(tier).route
    return hub_route("")
