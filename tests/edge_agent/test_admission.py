"""Admission gates on their own and in the pipeline's routes (scripted model and hub, so each
route's refusal is seen in milliseconds; the same bounds over HTTP with SmolLM2 are in
``tests/edge_agent/api/test_overload.py``)."""

from __future__ import annotations

import time
from contextlib import aclosing

import pytest

from edge_agent.admission import Admission, Gate, Overloaded
from edge_agent.pipeline import Pipeline
from edge_agent.policies import ThresholdPolicy
from edge_agent.request import Answer, InferenceRequest
from edge_agent.tenancy import RequestContext
from shared.config import AdmissionSettings
from shared.taxonomy import Route
from shared.wire import ChatMessage, SamplingParams
from tests.edge_agent.fakes import ScriptedBackend, ScriptedHub, words


class TwoAtOnce(ScriptedBackend):
    concurrency = 2


def _req(rid: str = "r1", force: str | None = None) -> InferenceRequest:
    return InferenceRequest(
        ctx=RequestContext(request_id=rid),
        model="auto",
        messages=(ChatMessage("user", f"What is the capital of France? ({rid})"),),
        params=SamplingParams(max_tokens=16, temperature=0.0),
        force=force,  # type: ignore[arg-type]
        force_source="header" if force else "",
    )


async def _answer(pipeline: Pipeline, req: InferenceRequest) -> Answer:
    async with aclosing(pipeline.events(req)) as events:
        async for event in events:
            if isinstance(event, Answer):
                return event
    raise AssertionError("no answer")


def test_a_full_gate_refuses_at_once_and_frees_places_as_holders_leave() -> None:
    gate = Gate("edge_local", limit=2)
    first, second = gate.admit(), gate.admit()
    with pytest.raises(Overloaded) as refused:
        gate.admit()
    assert refused.value.status == 429 and refused.value.retry_after_s == 1  # no hold measured yet
    first.release()
    first.release()  # a second release frees nothing more
    assert gate.held == 1
    with gate.admit():
        assert gate.held == 2
    second.release()
    assert (gate.held, gate.admitted, gate.refused) == (0, 3, 1)


def test_retry_after_follows_the_measured_hold_time() -> None:
    gate = Gate("edge_local", limit=2)
    gate.mean_hold_s = 9.0  # as if earlier runs had each held their place ~9 s
    slots = [gate.admit(), gate.admit()]
    with pytest.raises(Overloaded) as refused:
        gate.admit()
    # two holders served in turn: one leaves about every 4.5 s
    assert refused.value.retry_after_s == 5
    for slot in slots:
        slot.release()
    assert gate.mean_hold_s is not None and gate.mean_hold_s < 9.0  # these holds were short


def test_gates_are_sized_from_the_backend() -> None:
    one = Admission.from_settings(AdmissionSettings(), ScriptedBackend(words(0.9)))
    two = Admission.from_settings(AdmissionSettings(hub_in_flight=7), TwoAtOnce(words(0.9)))
    assert one.local_gate is not None and one.local_gate.limit == 1 + 4
    assert two.local_gate is not None and two.local_gate.limit == 2 + 8
    assert two.hub_gate is not None and two.hub_gate.limit == 7
    sized = Admission.from_settings(AdmissionSettings(local_queue=0), ScriptedBackend(words(0.9)))
    assert sized.local_gate is not None and sized.local_gate.limit == 1
    off = Admission.from_settings(AdmissionSettings(enabled=False), ScriptedBackend(words(0.9)))
    assert off.local_gate is None and off.hub_gate is None


async def test_a_full_local_gate_is_a_429_before_the_model_is_touched() -> None:
    backend = ScriptedBackend(words(0.9))
    admission = Admission(Gate("edge_local", limit=1))
    pipeline = Pipeline(backend, ThresholdPolicy(0.5), admission=admission)
    held = admission.local()
    started = time.perf_counter()
    with pytest.raises(Overloaded) as refused:
        await _answer(pipeline, _req())
    assert refused.value.status == 429 and time.perf_counter() - started < 0.1
    assert backend.jobs == []
    assert admission.snapshot() == {"edge_local": {"in_progress": 1, "limit": 1, "refused": 1}}
    held.release()
    answer = await _answer(pipeline, _req("r2"))  # recovered: the place is free again
    assert answer.route is Route.EDGE_LOCAL and admission.local_gate is not None
    assert admission.local_gate.held == 0  # the finished run gave its place back


async def test_a_full_hub_gate_falls_back_to_the_local_model() -> None:
    backend, hub = ScriptedBackend(words(0.2)), ScriptedHub()
    hub_gate = Gate("hub", limit=1, status=503)
    admission = Admission(Gate("edge_local", limit=1), hub_gate)
    pipeline = Pipeline(backend, ThresholdPolicy(0.5), hub=hub, admission=admission, draft_tokens=3)
    held = hub_gate.admit()
    answer = await _answer(pipeline, _req())  # low confidence: it would escalate
    assert answer.route is Route.EDGE_LOCAL and answer.fallback and hub.requests == []
    assert any("hub is at its limit" in s.reason for s in answer.trace)
    held.release()
    assert (await _answer(pipeline, _req("r2"))).route is Route.HUB_OSS


async def test_hub_and_local_model_both_full_is_a_503() -> None:
    backend, hub = ScriptedBackend(words(0.9)), ScriptedHub()
    hub_gate = Gate("hub", limit=1, status=503)
    admission = Admission(Gate("edge_local", limit=1), hub_gate)
    pipeline = Pipeline(backend, ThresholdPolicy(0.5), hub=hub, admission=admission)
    hub_place, local_place = hub_gate.admit(), admission.local()
    with pytest.raises(Overloaded) as refused:
        await _answer(pipeline, _req(force="hub"))  # no draft needed, no hub place, no local place
    assert refused.value.status == 503 and refused.value.retry_after_s >= 1
    hub_place.release()
    local_place.release()
    assert (await _answer(pipeline, _req("r2", force="hub"))).route is Route.HUB_OSS
