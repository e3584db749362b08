"""What one answered request becomes in telemetry, over the real HTTP API: forced routes, cache
bypasses, evaluation probes and clients that hung up before their answer was ready."""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_agent.app import create_app
from edge_agent.pipeline import Pipeline
from edge_agent.request import InferenceRequest
from edge_agent.serving import BackgroundAgent
from edge_agent.telemetry.recorder import TelemetryRecorder
from edge_agent.telemetry.sink import CLIENT_GONE, TelemetrySink
from edge_agent.telemetry.spool import TelemetrySpool
from edge_agent.tenancy import RequestContext
from shared.config import EdgeSettings
from shared.telemetry import TelemetryEvent
from shared.wire import ChatMessage, Classification, Escalate, Reply, SamplingParams
from tests.edge_agent.fakes import ScriptedBackend, ScriptedHub, ScriptedPolicy, words


class _ClassifyingPolicy(ScriptedPolicy):
    """Keeps every draft, and says what its heads would make of any prompt."""

    def classify(self, req: InferenceRequest) -> Classification:
        return Classification(task="math", domain="math")


class _SlowHub(ScriptedHub):
    async def escalate(self, request: Escalate) -> Reply:
        await asyncio.sleep(1.5)
        return await super().escalate(request)


def _agent(
    tmp_path: Path, hub: ScriptedHub, policy: ScriptedPolicy
) -> tuple[BackgroundAgent, TelemetrySpool]:
    spool = TelemetrySpool(tmp_path / "telemetry.db")
    sink = TelemetrySink(TelemetryRecorder(spool))
    settings = EdgeSettings(home=tmp_path, confidence_threshold=0.5, draft_tokens=3)
    app = create_app(settings, ScriptedBackend(words(0.9)), hub=hub, policy=policy, sink=sink)
    return BackgroundAgent(app).start(), spool


def _events(agent: BackgroundAgent, spool: TelemetrySpool) -> list[TelemetryEvent]:
    agent.drain()
    lease = spool.lease(max_events=100)
    assert lease is not None
    return [TelemetryEvent.from_attributes(e) for e in lease.events]


def _body(question: str, **edgeroute: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "auto", "messages": [{"role": "user", "content": question}]}
    if edgeroute:
        body["edgeroute"] = edgeroute
    return body


def test_a_baseline_is_stored_as_forced_with_its_domain_and_probe(tmp_path: Path) -> None:
    agent, spool = _agent(tmp_path, ScriptedHub(), _ClassifyingPolicy())
    question = "Natalia sold 48 clips in April and half as many in May. How many in all?"
    baseline = _body(question, route="hub", cache="bypass", probe={"reference": "72", "kind": "gsm8k"})
    try:
        url = f"{agent.base_url}/v1/chat/completions"
        forced = _body("Name the largest planet of the solar system.", route="edge_local")
        for body in (baseline, baseline, _body(question), _body(question), forced, forced):
            assert httpx.post(url, json=body, timeout=30).status_code == 200
        pinned, pinned_again, routed, routed_again, local, local_again = _events(agent, spool)
    finally:
        agent.stop()
    for event in (pinned, pinned_again):
        assert event.route == "hub_oss" and event.route_forced == "body" and event.cache_bypass
        assert not event.escalated  # the client chose the hub; the router did not escalate
        assert (event.domain, event.task) == ("math", "math")  # classified although forced
        assert (event.reference, event.reference_kind) == ("72", "gsm8k")
        assert event.completion  # kept with content capture off: the hub grades it
        # a baseline asks the same question on purpose: not a re-ask, and not re-asked later
        assert not event.regeneration and not event.regenerates
    assert not routed.regeneration
    assert routed_again.regeneration and routed_again.regenerates == routed.response_id
    assert routed.route_forced == "" and not routed.cache_bypass and routed.reference is None
    assert routed.completion is None and routed.prompt is None  # capture is off
    # a user who only pins the route is still a user: the re-ask counts
    assert local.route_forced == "body" and not local.cache_bypass and not local.escalated
    assert local_again.regeneration and local_again.regenerates == local.response_id


def test_a_request_whose_client_timed_out_is_stored_as_a_failure(tmp_path: Path) -> None:
    agent, spool = _agent(tmp_path, _SlowHub(), _ClassifyingPolicy())
    try:
        url = f"{agent.base_url}/v1/chat/completions"
        forced = _body("What is the capital of France?", route="hub", hub_model="tier:frontier")
        with pytest.raises(httpx.TimeoutException):
            httpx.post(url, json=forced, timeout=0.3)
        time.sleep(0.5)  # the hang-up cancels the handler on the agent's loop
        assert httpx.post(url, json=forced, timeout=30).status_code == 200
        gone, served = _events(agent, spool)
    finally:
        agent.stop()
    # cancelled while it waited for the tier it asked for: a failure there, with no answer
    assert (gone.error_type, gone.route) == (CLIENT_GONE, "frontier") and not gone.completion
    assert (served.error_type, served.route) == ("", "hub_oss")  # the scripted hub's own tier


async def test_an_answer_finished_after_its_client_left_is_a_failure(tmp_path: Path) -> None:
    """A server that runs handlers to the end (no cancellation) still marks the answer as lost."""
    spool = TelemetrySpool(tmp_path / "telemetry.db")
    sink = TelemetrySink(TelemetryRecorder(spool, capture_content=True))
    pipeline = Pipeline(ScriptedBackend(words(0.9)), _ClassifyingPolicy(), sink=sink)
    messages = (ChatMessage("user", "What is the capital of France?"),)
    for rid, gone in (("left", True), ("stayed", False)):
        ctx = RequestContext(request_id=rid, client_gone=functools.partial(bool, gone))
        await pipeline.answer(InferenceRequest(ctx, "auto", messages, SamplingParams(max_tokens=8)))
    await pipeline.drain()
    lease = spool.lease(max_events=10)
    assert lease is not None
    left, stayed = (TelemetryEvent.from_attributes(e) for e in lease.events)
    assert left.error_type == CLIENT_GONE and left.completion  # answered, to nobody
    assert stayed.error_type == ""
    spool.close()
