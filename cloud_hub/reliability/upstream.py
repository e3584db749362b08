"""T30 (bounded retries on scripted upstream errors) and T31 (circuit breaker during an outage).

The hub's dispatcher runs real ``openai_http`` backends against a scripted OpenAI-compatible
upstream that answers each call as told: 429 with ``Retry-After``, 500/503, a read that never
ends, a refused connection, 400, 401, a 200 whose body is not a completion. Each request runs a
plan that names targets more than once (a cyclic fallback config). T30 checks every failure class
is retried only where retrying can help, never more than the chain allows, within the deadline,
each target at most once, with bounded log output per failed request. T31 fails one target for
a while: after the breaker's threshold it is skipped (only probes reach it), the others answer
at their usual latency, and once it recovers a probe closes the breaker again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from cloud_hub.backends.openai_http import OpenAIHTTPBackend
from cloud_hub.dispatch import Dispatcher
from cloud_hub.registry import ModelRegistry, RegisteredModel
from cloud_hub.reliability.harness import counting_logs
from cloud_hub.tiers import TierChooser, TierPlan
from shared.config import HubModelEntry
from shared.reliability import Report, Result, Size, free_port, percentile, pick
from shared.routing.fallback import FallbackChain
from shared.taxonomy import Tier
from shared.upstream import KEY, ScriptedUpstream
from shared.wire import Body, ChatMessage, Error, Escalate, Reply, SamplingParams

T30_NAME = "bounded retries on scripted upstream errors"
T31_NAME = "circuit breaker during an upstream outage"
NAMES = ("a", "b", "c")


class CyclicPlan(TierChooser):
    """A fallback config that names its targets more than once: ``a, b, a, c, b, a``."""

    def plan(self, req: Escalate) -> TierPlan:
        by_name = {m.entry.name: m for m in self.registry.models}
        order = [by_name[n] for n in ("a", "b", "a", "c", "b", "a") if n in by_name]
        return TierPlan(tuple(order), (), "cyclic test plan", {})


def registry(base_url: str, *, dead: str | None = None, bad_key: str | None = None) -> ModelRegistry:
    models = []
    for name in NAMES:
        url = f"http://127.0.0.1:{free_port()}/v1" if name == dead else base_url
        key = "sk-wrong" if name == bad_key else KEY
        entry = HubModelEntry(name=name, backend="openai_http", tier=Tier.FRONTIER, base_url=url)
        models.append(RegisteredModel(entry, OpenAIHTTPBackend(url, name, api_key=key, timeout_s=30)))
    return ModelRegistry(models, "a")


def request(n: int, *, deadline_s: float = 3.0, temperature: float = 0.0) -> Escalate:
    msgs = [ChatMessage(role="user", content=f"question number {n}")]
    return Escalate(
        f"r{n}", "auto", msgs, SamplingParams(temperature=temperature), deadline=time.time() + deadline_s
    )


async def ask(dispatcher: Dispatcher, req: Escalate) -> tuple[Body, float]:
    out: list[Body] = []

    async def send(body: Body) -> None:
        out.append(body)

    t0 = time.monotonic()
    await dispatcher.handle(req, "edge", send)
    return out[-1], time.monotonic() - t0


@dataclass(frozen=True)
class Case:
    name: str
    scripts: dict[str, tuple[str, ...]]
    expect_calls: dict[str, int]  # upstream calls per target for one request
    answered_by: str | None  # None: the request ends in an error
    dead: str | None = None
    bad_key: str | None = None
    deadline_s: float = 3.0
    temperature: float = 0.0


CASES = (
    Case("429 with Retry-After", {"a": ("status:429",), "b": ("ok",)}, {"a": 1, "b": 1, "c": 0}, "b"),
    Case(
        "500 then 503",
        {"a": ("status:500",), "b": ("status:503",), "c": ("ok",)},
        {"a": 1, "b": 1, "c": 1},
        "c",
    ),
    Case("503 everywhere", {n: ("status:503",) for n in NAMES}, {"a": 1, "b": 1, "c": 1}, None),
    Case("connect refused", {"b": ("ok",)}, {"a": 0, "b": 1, "c": 0}, "b", dead="a"),
    Case("read timeout", {"a": ("hang",), "b": ("ok",)}, {"a": 1, "b": 0, "c": 0}, None, deadline_s=1.5),
    Case("400", {"a": ("status:400",)}, {"a": 1, "b": 0, "c": 0}, None),
    Case("401", {"a": ("ok",)}, {"a": 1, "b": 0, "c": 0}, None, bad_key="a"),
    Case("malformed 200", {"a": ("malformed",), "b": ("ok",)}, {"a": 1, "b": 1, "c": 0}, "b"),
    Case("invalid request", {}, {"a": 0, "b": 0, "c": 0}, None, temperature=5.0),
)


async def _t30(size: Size, r: Report) -> None:
    rounds = pick(size, 3, 10, 100)
    upstream = ScriptedUpstream()
    await upstream.start()
    wrong = over_attempts = over_deadline = twice = 0
    log_bytes: list[float] = []
    failed = 0
    try:
        for case in CASES:
            for k in range(rounds):
                for name in NAMES:
                    upstream.script(name, *case.scripts.get(name, ("ok",)))
                reg = registry(upstream.base_url, dead=case.dead, bad_key=case.bad_key)
                dispatcher = Dispatcher(reg, tiers=CyclicPlan(reg), chain=FallbackChain(max_attempts=3))
                before = len(upstream.calls)
                with counting_logs() as logs:
                    body, seconds = await ask(
                        dispatcher, request(k, deadline_s=case.deadline_s, temperature=case.temperature)
                    )
                await reg.close()
                calls = upstream.calls[before:]
                per = {n: sum(c.model == n for c in calls) for n in NAMES}
                got = body.model if isinstance(body, Reply) else None
                if per != case.expect_calls or got != case.answered_by:
                    wrong += 1
                    if wrong <= 3:
                        r.require(False, f"{case.name}: calls {per}, answered by {got}")
                over_attempts += len(calls) > 3
                twice += any(v > 1 for v in per.values())
                over_deadline += seconds > case.deadline_s + 0.5
                if isinstance(body, Error):
                    failed += 1
                    log_bytes.append(logs.bytes)
    finally:
        await upstream.close()
    r.figure(
        cases=len(CASES),
        requests=len(CASES) * rounds,
        wrong_retry_behaviour=wrong,
        over_max_attempts=over_attempts,
        target_tried_twice=twice,
        past_deadline=over_deadline,
        failed_requests=failed,
        log_bytes_per_failed_p99=percentile(log_bytes, 99),
    )
    r.require(wrong == 0, f"{wrong} requests retried other than their failure class allows")
    r.require(over_attempts == 0, "a request made more than 3 upstream calls")
    r.require(twice == 0, "a target was called twice for one request")
    r.require(over_deadline == 0, f"{over_deadline} requests ran past their deadline")
    r.require(percentile(log_bytes, 99) <= 10_000, "a failed request logged more than 10 KB")


def t30_retries(size: Size, work: Path) -> Result:
    r = Report("T30", T30_NAME)
    asyncio.run(_t30(size, r))
    return r.result()


# --- T31 --------------------------------------------------------------------------------------


async def _t31(size: Size, r: Report) -> None:
    threshold, reset_s = 3, 1.0
    outage_s = pick(size, 3.5, 15.0, 60.0)  # several reset periods: probes must be seen too
    upstream = ScriptedUpstream()
    await upstream.start()
    reg = registry(upstream.base_url)
    chain = FallbackChain(max_attempts=3, failure_threshold=threshold, reset_after_s=reset_s)
    dispatcher = Dispatcher(reg, tiers=CyclicPlan(reg), chain=chain)
    lag_s = 0.3
    upstream.script("a", f"lag:{lag_s}")  # each failure costs its caller 0.3 s: skipping it shows
    upstream.script("b", "ok")
    latencies: list[float] = []
    try:
        # b alone first, for the latency it answers at without a broken target in front of it
        direct: list[float] = []
        for k in range(20):
            _, s = await ask(Dispatcher(reg, chain=FallbackChain()), _named(k, "b"))
            direct.append(s)
        started = time.monotonic()
        served = outage = 0
        while time.monotonic() - started < outage_s:
            body, s = await ask(dispatcher, request(outage))
            outage += 1
            served += isinstance(body, Reply)
            latencies.append(s)
            await asyncio.sleep(0.01)
        during_s = time.monotonic() - started
        calls_a = len(upstream.calls_to("a"))
        # a recovers: within one reset period a probe gets through and closes the breaker
        upstream.script("a", "ok")
        recovered_after = None
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10 * reset_s:
            body, _ = await ask(dispatcher, request(10_000))
            if isinstance(body, Reply) and body.model == "a":
                recovered_after = time.monotonic() - t0
                break
            await asyncio.sleep(0.05)
        state = chain.breaker("a").state.value
    finally:
        await reg.close()
        await upstream.close()
    probes_allowed = threshold + int(during_s / reset_s) + 1
    p99, direct99 = percentile(latencies, 99), percentile(direct, 99)
    r.figure(
        requests_during_outage=outage,
        answered=served,
        calls_to_failing_target=calls_a,
        calls_allowed=probes_allowed,
        p99_ms=p99 * 1000,
        p99_direct_ms=direct99 * 1000,
        recovered_after_s=recovered_after,
        breaker_state_after=state,
    )
    r.require(served == outage, f"{outage - served} requests failed while another target could answer")
    r.require(
        calls_a <= probes_allowed, f"the failing target got {calls_a} calls, breaker allows {probes_allowed}"
    )
    r.require(calls_a > threshold, "no probe reached the failing target after its breaker opened")
    # a request that waited on the failing target took lag_s longer than b alone: only the
    # first few (until the breaker opened) and the probes may
    slow = sum(s > direct99 + lag_s / 2 for s in latencies)
    r.figure(requests_that_waited=slow)
    r.require(slow <= probes_allowed, f"{slow} requests waited on the failing target")
    r.require(recovered_after is not None and recovered_after <= 2 * reset_s + 0.5, "no half-open recovery")
    r.require(state == "closed", f"the breaker is {state} after recovery")


def _named(n: int, model: str) -> Escalate:
    req = request(n)
    return Escalate(req.request_id, model, req.messages, req.params, req.deadline)


def t31_breaker(size: Size, work: Path) -> Result:
    r = Report("T31", T31_NAME)
    asyncio.run(_t31(size, r))
    return r.result()
