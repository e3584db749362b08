from __future__ import annotations

import time

import msgspec
import pytest

from cloud_hub.dispatch import Dispatcher
from shared.taxonomy import Route
from shared.wire import Body, ChatMessage, Error, Escalate, Reply, ReplyChunk, SamplingParams
from tests.cloud_hub.helpers import ECHO_COST, build_registry


def _req(
    model: str = "echo", text: str = "one two three", *, stream: bool = False, in_s: float = 5.0
) -> Escalate:
    return Escalate(
        request_id="r1",
        model=model,
        messages=[ChatMessage("system", "be terse"), ChatMessage("user", text)],
        params=SamplingParams(max_tokens=16),
        deadline=time.time() + in_s,
        stream=stream,
    )


async def _run(req: Escalate) -> list[Body]:
    sent: list[Body] = []

    async def send(body: Body) -> None:
        sent.append(body)

    await Dispatcher(build_registry(slow_s=0.3)).handle(req, "edge-a", send)
    return sent


async def test_reply_is_priced_and_traced() -> None:
    [reply] = await _run(_req())
    assert isinstance(reply, Reply)
    assert (reply.text, reply.model, reply.route) == ("one two three", "echo", Route.HUB_OSS.value)
    assert reply.usage.prompt_tokens == 5 and reply.usage.completion_tokens == 3
    assert reply.cost_usd == pytest.approx(ECHO_COST.estimate(5, 3))
    [step] = reply.trace
    assert step.stage == "hub_oss" and step.decision == "answer"
    assert step.detail["backend"] == "echo" and step.detail["edge"] == "edge-a"


async def test_tier_sets_route_and_default_model_is_explained() -> None:
    [frontier] = await _run(_req("frontier-echo"))
    assert isinstance(frontier, Reply) and frontier.route == Route.FRONTIER.value
    [default] = await _run(_req(""))
    assert isinstance(default, Reply) and default.model == "echo"
    assert "hub default" in default.trace[0].reason


async def test_stream_sends_ordered_chunks_then_reply() -> None:
    sent = await _run(_req(stream=True))
    chunks, final = sent[:-1], sent[-1]
    assert all(isinstance(c, ReplyChunk) for c in chunks)
    assert [c.seq for c in chunks if isinstance(c, ReplyChunk)] == [0, 1, 2]
    assert isinstance(final, Reply)
    assert "".join(c.delta for c in chunks if isinstance(c, ReplyChunk)) == final.text == "one two three"


async def test_unknown_model() -> None:
    [err] = await _run(_req("gpt-99"))
    assert isinstance(err, Error) and err.code == "unknown_model" and "gpt-99" in err.message
    assert "echo" in err.message  # tells the edge what exists


@pytest.mark.parametrize(("model", "retryable"), [("flaky", True), ("broken", False)])
@pytest.mark.parametrize("stream", [False, True])
async def test_backend_errors_keep_retryable_flag(model: str, retryable: bool, stream: bool) -> None:
    sent = await _run(_req(model, stream=stream))
    err = sent[-1]
    assert isinstance(err, Error) and err.code == "backend_error" and err.retryable is retryable


async def test_deadline_past_on_arrival_is_dropped() -> None:
    [err] = await _run(_req(in_s=-0.01))
    assert isinstance(err, Error) and err.code == "deadline_exceeded"


async def test_deadline_during_backend_work() -> None:
    [err] = await _run(_req("slow", in_s=0.1))  # the backend would answer after 0.3 s
    assert isinstance(err, Error) and err.code == "deadline_exceeded"


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"deadline": float("nan")}, "deadline"),
        ({"messages": []}, "messages"),
        ({"params": SamplingParams(max_tokens=0)}, "max_tokens"),
        ({"params": SamplingParams(temperature=-1.0)}, "temperature"),
        ({"params": SamplingParams(top_p=1.5)}, "top_p"),
        ({"params": SamplingParams(top_p=-0.1)}, "top_p"),
    ],
)
async def test_invalid_requests_are_refused_clearly(change: dict[str, object], fragment: str) -> None:
    [err] = await _run(msgspec.structs.replace(_req(), **change))
    assert isinstance(err, Error) and err.code == "invalid_request" and fragment in err.message


async def test_a_named_model_runs_as_a_plan_of_one() -> None:
    [reply] = await _run(_req("frontier-echo"))
    assert isinstance(reply, Reply)
    [step] = reply.trace  # no policy steps: nothing was chosen
    assert step.detail["attempts"] == 1 and "the request named frontier-echo" in step.reason


async def test_a_named_model_that_keeps_failing_is_skipped_by_its_breaker() -> None:
    dispatcher = Dispatcher(build_registry())
    sent: list[Body] = []

    async def send(body: Body) -> None:
        sent.append(body)

    for i in range(4):
        await dispatcher.handle(msgspec.structs.replace(_req("flaky"), request_id=f"r{i}"), "edge-a", send)
    errors = [b for b in sent if isinstance(b, Error)]
    assert [e.code for e in errors] == ["backend_error"] * 4
    assert all("overloaded" in e.message for e in errors[:3])
    # the fourth never reached the model: nothing there said a retry may help
    assert "circuit_open" in errors[3].message and not errors[3].retryable


async def test_a_named_stream_broken_mid_answer_says_so() -> None:
    sent = await _run(_req("flaky", stream=True))
    assert [c.delta for c in sent if isinstance(c, ReplyChunk)] == ["partial"]
    err = sent[-1]
    assert isinstance(err, Error) and "flaky failed mid-stream" in err.message and err.retryable
