"""The pipeline's routing with a scripted local model and a scripted hub, in milliseconds: the
cascade (keep the draft, escalate it, escalate before drafting), the fallbacks, the stream paths
and the bookkeeping that follows an answer. The same paths through a real hub process and
SmolLM2 are in ``test_pipeline_hub.py`` and ``test_pipeline_hub_faults.py``.
"""

from __future__ import annotations

import json
import logging
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_agent.app import create_app
from edge_agent.backends.base import PromptTooLong
from edge_agent.cache.service import CacheService
from edge_agent.cache.stage import CacheStage, cache_request
from edge_agent.hub_link.errors import HubError, HubUnavailable
from edge_agent.pipeline import Event, Pipeline
from edge_agent.policies import ThresholdPolicy
from edge_agent.request import Answer, Decision, Delta, InferenceRequest, NoRouteAvailable, Outcome
from edge_agent.serving import BackgroundAgent
from edge_agent.tenancy import RequestContext
from shared.config import EdgeSettings
from shared.errors import StreamInterrupted
from shared.taxonomy import Route
from shared.wire import ChatMessage, Classification, SamplingParams
from tests.edge_agent.fakes import WORDS, ScriptedBackend, ScriptedHub, ScriptedPolicy, words

DRAFT = "".join(WORDS[:3])  # what three draft tokens say


def _req(rid: str = "r1", *, stream: bool = False, force: Any = None) -> InferenceRequest:
    return InferenceRequest(
        ctx=RequestContext(request_id=rid),
        model="auto",
        messages=(ChatMessage("user", f"What is the capital of France? ({rid})"),),
        params=SamplingParams(max_tokens=16, temperature=0.0),
        stream=stream,
        force=force,
        force_source="header" if force else "",
    )


def _pipeline(backend: ScriptedBackend, hub: ScriptedHub | None = None, **kwargs: Any) -> Pipeline:
    policy = kwargs.pop("policy", None) or ThresholdPolicy(0.5)
    return Pipeline(backend, policy, hub=hub, draft_tokens=3, **kwargs)


async def _events(pipeline: Pipeline, req: InferenceRequest) -> list[Event]:
    async with aclosing(pipeline.events(req)) as events:
        return [event async for event in events]


def _steps(answer: Answer) -> list[tuple[str, str]]:
    return [(s.stage, s.decision) for s in answer.trace]


# --- the cascade ------------------------------------------------------------------------------


async def test_a_confident_draft_is_finished_locally() -> None:
    log: list[str] = []
    backend, hub = ScriptedBackend(words(0.9), log=log), ScriptedHub(log=log)
    answer = await _pipeline(backend, hub).answer(_req())
    assert answer.route is Route.EDGE_LOCAL and answer.text == backend.text and not answer.fallback
    assert _steps(answer) == [("policy", "answer"), ("edge_local", "answer")]
    assert answer.usage.completion_tokens == len(WORDS)
    assert hub.requests == [] and log == ["local 1 start", "local 1 closed"]


async def test_an_unsure_draft_escalates_with_the_draft() -> None:
    log: list[str] = []
    backend, hub = ScriptedBackend(words(0.2), log=log), ScriptedHub(log=log)
    answer = await _pipeline(backend, hub).answer(_req())
    assert answer.route is Route.HUB_OSS and answer.text == hub.text
    assert _steps(answer) == [("policy", "escalate"), ("hub_oss", "answer"), ("hub", "reply")]
    (esc,) = hub.requests
    assert esc.draft == DRAFT and esc.confidence == pytest.approx(0.2)
    assert answer.confidence == pytest.approx(0.2) and "< 0.500" in answer.escalation_reason
    # the draft's stream is closed, once, before the hub is asked: the model is free meanwhile
    assert log == ["local 1 start", "local 1 closed", "hub asked"]


async def test_a_pre_draft_escalation_never_drafts() -> None:
    heads = Classification(task="math", success={"edge": 0.1})
    policy = ScriptedPolicy(before=Decision(True, "too hard for the edge", {"pre_draft": True}, heads))
    backend, hub = ScriptedBackend(words(0.9)), ScriptedHub()
    answer = await _pipeline(backend, hub, policy=policy).answer(_req())
    assert answer.route is Route.HUB_OSS and answer.escalation_reason == "too hard for the edge"
    assert backend.jobs == [] and policy.drafts == []
    (esc,) = hub.requests
    assert esc.draft is None and esc.confidence is None and esc.classification == heads
    assert _steps(answer)[0] == ("policy", "escalate")


async def test_with_the_hub_down_the_pre_draft_check_is_skipped() -> None:
    policy = ScriptedPolicy(before=Decision(True, "too hard for the edge"))
    backend = ScriptedBackend(words(0.9))
    answer = await _pipeline(backend, ScriptedHub(connected=False), policy=policy).answer(_req())
    assert answer.route is Route.EDGE_LOCAL and not answer.fallback and len(policy.drafts) == 1


# --- fallbacks --------------------------------------------------------------------------------


async def test_hub_down_finishes_the_draft_locally() -> None:
    log: list[str] = []
    backend, hub = ScriptedBackend(words(0.2), log=log), ScriptedHub(connected=False, log=log)
    answer = await _pipeline(backend, hub).answer(_req())
    assert answer.route is Route.EDGE_LOCAL and answer.fallback and answer.text == backend.text
    assert _steps(answer) == [("policy", "escalate"), ("hub", "fallback"), ("edge_local", "answer")]
    assert "hub not connected" in answer.trace[1].reason
    # the draft's own run went on: nothing was generated twice
    assert hub.requests == [] and log == ["local 1 start", "local 1 closed"]


async def test_a_failed_escalation_resumes_the_draft_and_closes_each_run_once() -> None:
    log: list[str] = []
    hub = ScriptedHub(fail=HubError("overloaded", "try later"), log=log)
    backend = ScriptedBackend(words(0.2), log=log)
    answer = await _pipeline(backend, hub).answer(_req())
    assert answer.route is Route.EDGE_LOCAL and answer.fallback and answer.text == backend.text
    assert "HubError" in answer.trace[1].reason
    assert backend.jobs[1].prefix_tokens == (0, 1, 2)  # the draft's tokens, continued
    assert answer.usage.completion_tokens == len(WORDS)
    assert log == ["local 1 start", "local 1 closed", "hub asked", "local 2 start", "local 2 closed"]


async def test_a_local_failure_goes_to_the_hub() -> None:
    backend, hub = ScriptedBackend(words(0.9), fail_at=1), ScriptedHub()
    answer = await _pipeline(backend, hub).answer(_req())
    assert answer.route is Route.HUB_OSS and answer.text == hub.text
    assert answer.escalation_reason == "the local model failed"
    assert _steps(answer)[0] == ("edge_local", "error")
    assert hub.requests[0].draft is None  # nothing of the broken run travels
    assert backend.open == 0


async def test_no_route_when_the_hub_and_the_local_model_both_fail() -> None:
    backend = ScriptedBackend(words(0.9), fail_at=1)
    hub = ScriptedHub(fail=HubUnavailable("no hub"))
    with pytest.raises(NoRouteAvailable, match="the local model failed too"):
        await _pipeline(backend, hub).answer(_req())
    assert len(backend.jobs) == 2 and backend.open == 0


async def test_a_prompt_too_long_is_not_escalated() -> None:
    backend, hub = ScriptedBackend(words(0.9), prompt_too_long=True), ScriptedHub()
    with pytest.raises(PromptTooLong):
        await _pipeline(backend, hub).answer(_req())
    assert hub.requests == []


# --- streams ----------------------------------------------------------------------------------


async def test_a_local_stream_is_deltas_then_one_answer() -> None:
    backend = ScriptedBackend(words(0.9))
    *deltas, answer = await _events(_pipeline(backend, ScriptedHub()), _req(stream=True))
    assert isinstance(answer, Answer) and all(isinstance(d, Delta) for d in deltas)
    assert deltas[0].text == DRAFT  # held back until the policy accepted it, then sent at once
    assert "".join(d.text for d in deltas) == answer.text == backend.text


async def test_a_hub_stream_carries_only_the_hubs_text() -> None:
    backend, hub = ScriptedBackend(words(0.2)), ScriptedHub()
    *deltas, answer = await _events(_pipeline(backend, hub), _req(stream=True))
    assert isinstance(answer, Answer) and answer.route is Route.HUB_OSS
    assert {d.route for d in deltas if isinstance(d, Delta)} == {Route.HUB_OSS}
    assert "".join(d.text for d in deltas) == answer.text == hub.text
    assert hub.requests[0].stream is True


async def test_a_hub_stream_broken_midway_is_not_spliced_with_local_text() -> None:
    backend, hub = ScriptedBackend(words(0.2)), ScriptedHub(break_after=2)
    seen: list[Event] = []
    with pytest.raises(StreamInterrupted, match="mid-answer"):
        async with aclosing(_pipeline(backend, hub).events(_req(stream=True))) as events:
            async for event in events:
                seen.append(event)
    assert [(e.text, e.route) for e in seen] == [("Paris,", Route.HUB_OSS), (" on", Route.HUB_OSS)]
    assert len(backend.jobs) == 1 and backend.open == 0  # no local answer was started


def test_a_broken_hub_stream_is_one_in_band_error_over_http(tmp_path: Path) -> None:
    settings = EdgeSettings(home=tmp_path, confidence_threshold=0.5, draft_tokens=3)
    app = create_app(settings, ScriptedBackend(words(0.2)), hub=ScriptedHub(break_after=2))
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with BackgroundAgent(app) as agent:
        url = f"{agent.base_url}/v1/chat/completions"
        with httpx.stream("POST", url, json=body, timeout=30) as response:
            lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    chunks = [json.loads(line) for line in lines if line != "[DONE]"]
    errors = [c for c in chunks if "error" in c]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert text == "Paris, on"
    assert len(errors) == 1 and chunks[-1] is errors[0]
    assert errors[0]["error"]["code"] == "stream_interrupted"


# --- bookkeeping ------------------------------------------------------------------------------


@pytest.fixture()
def cache(tmp_path: Path) -> Any:
    with CacheService(tmp_path / "cache.db") as service:
        yield service


def _stored(service: CacheService, req: InferenceRequest) -> bool:
    key = cache_request(req)
    assert key is not None
    return service.lookup_exact(key).hit


async def test_the_answer_is_released_before_its_bookkeeping(cache: CacheService) -> None:
    outcomes: list[Outcome] = []
    pipeline = _pipeline(ScriptedBackend(words(0.9)), caches=[CacheStage(cache)], sink=outcomes.append)
    req = _req()
    await pipeline.answer(req)
    assert pipeline.bookkeeping.pending == 1 and not _stored(cache, req)
    await pipeline.drain()
    assert pipeline.bookkeeping.pending == 0 and _stored(cache, req)
    assert [o.request.ctx.request_id for o in outcomes] == ["r1"]


async def test_inline_bookkeeping_is_done_when_the_answer_arrives(cache: CacheService) -> None:
    pipeline = _pipeline(
        ScriptedBackend(words(0.9)), caches=[CacheStage(cache)], background_bookkeeping=False
    )
    req = _req()
    await pipeline.answer(req)
    assert pipeline.bookkeeping.pending == 0 and _stored(cache, req)


async def test_a_failing_sink_is_logged_and_the_store_still_runs(
    cache: CacheService, caplog: pytest.LogCaptureFixture
) -> None:
    def sink(outcome: Outcome) -> None:
        raise RuntimeError("spool full")

    pipeline = _pipeline(ScriptedBackend(words(0.9)), caches=[CacheStage(cache)], sink=sink)
    req = _req()
    with caplog.at_level(logging.ERROR):
        answer = await pipeline.answer(req)
        await pipeline.drain()
    assert answer.route is Route.EDGE_LOCAL and _stored(cache, req)
    assert "telemetry sink failed" in caplog.text


async def test_telemetry_sees_answers_in_the_order_they_went_out(cache: CacheService) -> None:
    seen: list[str] = []
    pipeline = _pipeline(
        ScriptedBackend(words(0.9)),
        caches=[CacheStage(cache)],
        sink=lambda outcome: seen.append(outcome.request.ctx.request_id),
    )
    for rid in ("r1", "r2", "r3"):
        await pipeline.answer(_req(rid))
    await pipeline.drain()
    assert seen == ["r1", "r2", "r3"]


async def test_after_aclose_answers_are_booked_inline(cache: CacheService) -> None:
    pipeline = _pipeline(ScriptedBackend(words(0.9)), caches=[CacheStage(cache)])
    first = _req("r1")
    await pipeline.answer(first)
    await pipeline.aclose()
    assert _stored(cache, first)
    await pipeline.aclose()  # idempotent
    late = _req("r2")
    await pipeline.answer(late)
    assert pipeline.bookkeeping.pending == 0 and _stored(cache, late)
