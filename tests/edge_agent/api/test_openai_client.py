"""The official ``openai`` client against a real agent (SmolLM2 on llama.cpp, real HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from edge_agent.app import create_app
from edge_agent.backends.llamacpp import LlamaCppBackend
from edge_agent.serving import BackgroundAgent
from shared.config import EdgeSettings
from shared.taxonomy import Route
from tests.edge_agent.conftest import SMOLLM

QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is the capital of France?"}]


def _agent(backend: LlamaCppBackend, home: Path, threshold: float) -> BackgroundAgent:
    settings = EdgeSettings(home=home, confidence_threshold=threshold, draft_tokens=6)
    return BackgroundAgent(create_app(settings, backend, owns_backend=False)).start()


@pytest.fixture(scope="module")
def confident(
    smollm_backend: LlamaCppBackend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackgroundAgent]:
    """Threshold 0: every draft is confident enough, so answers stay local."""
    agent = _agent(smollm_backend, tmp_path_factory.mktemp("edge"), 0.0)
    yield agent
    agent.stop()


@pytest.fixture(scope="module")
def doubtful(
    smollm_backend: LlamaCppBackend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackgroundAgent]:
    """Threshold 1: every draft escalates, and with no hub configured it must fall back."""
    agent = _agent(smollm_backend, tmp_path_factory.mktemp("edge"), 1.0)
    yield agent
    agent.stop()


def _client(agent: BackgroundAgent) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{agent.base_url}/v1", api_key="unused", max_retries=0, timeout=120)


def _edgeroute(obj: Any) -> dict[str, Any]:
    extra = obj.model_extra or {}
    assert "edgeroute" in extra, f"no edgeroute field in {obj}"
    field: dict[str, Any] = extra["edgeroute"]
    return field


def test_chat_answer_carries_route_header_and_trace(confident: BackgroundAgent) -> None:
    raw = _client(confident).chat.completions.with_raw_response.create(
        model=SMOLLM, messages=QUESTION, max_tokens=12, temperature=0
    )
    completion = raw.parse()
    assert raw.headers["x-edgeroute-route"] == Route.EDGE_LOCAL.value
    assert raw.headers["x-request-id"].startswith("req-")
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.usage is not None and 0 < completion.usage.completion_tokens <= 12
    info = _edgeroute(completion)
    assert info["route"] == "edge_local"
    assert 0.0 < info["confidence"] <= 1.0
    assert info["cost_usd"] > 0  # local answers carry their energy estimate
    stages = [(s["stage"], s["decision"]) for s in info["trace"]]
    assert stages == [("policy", "answer"), ("edge_local", "answer")]
    assert "mean token probability" in info["trace"][0]["reason"]


def test_client_request_id_is_echoed(confident: BackgroundAgent) -> None:
    raw = _client(confident).chat.completions.with_raw_response.create(
        model="auto", messages=QUESTION, max_tokens=2, extra_headers={"x-request-id": "trace-42"}
    )
    assert raw.headers["x-request-id"] == "trace-42"


def test_streamed_chat_matches_non_streamed(confident: BackgroundAgent) -> None:
    client = _client(confident)
    whole = client.chat.completions.create(model="auto", messages=QUESTION, max_tokens=16, temperature=0)
    with client.chat.completions.with_streaming_response.create(
        model="auto",
        messages=QUESTION,
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        assert response.headers["x-edgeroute-route"] == "edge_local"
        chunks = list(response.parse())
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [whole.choices[0].finish_reason]
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]
    assert all(c.usage is None for c in chunks[:-1])
    assert _edgeroute(usage_chunk)["route"] == "edge_local"


def test_stream_without_usage_puts_trace_on_finish_chunk(confident: BackgroundAgent) -> None:
    chunks = list(
        _client(confident).chat.completions.create(model="auto", messages=QUESTION, max_tokens=4, stream=True)
    )
    assert chunks[-1].choices[0].finish_reason is not None
    assert _edgeroute(chunks[-1])["trace"][-1]["stage"] == "edge_local"


def test_legacy_completions(confident: BackgroundAgent) -> None:
    client = _client(confident)
    done = client.completions.create(model="auto", prompt="The sky is", max_tokens=5, temperature=0)
    assert done.object == "text_completion"
    assert done.choices[0].finish_reason == "length"
    assert done.usage is not None and done.usage.completion_tokens == 5
    assert _edgeroute(done)["route"] == "edge_local"
    pieces = list(
        client.completions.create(model="auto", prompt="The sky is", max_tokens=5, temperature=0, stream=True)
    )
    assert "".join(p.choices[0].text for p in pieces) == done.choices[0].text


def test_models_lists_the_local_model(confident: BackgroundAgent) -> None:
    ids = [m.id for m in _client(confident).models.list()]
    assert SMOLLM in ids and "auto" in ids


def test_forced_hub_without_hub_falls_back_with_reason(confident: BackgroundAgent) -> None:
    raw = _client(confident).chat.completions.with_raw_response.create(
        model="hub", messages=QUESTION, max_tokens=6, temperature=0
    )
    info = _edgeroute(raw.parse())
    assert raw.headers["x-edgeroute-route"] == "edge_local"
    assert info["fallback"] is True
    steps = {(s["stage"], s["decision"]): s for s in info["trace"]}
    assert "forced to the hub by the request model" in steps[("policy", "escalate")]["reason"]
    assert "no hub configured" in steps[("hub", "fallback")]["reason"]
    assert ("edge_local", "answer") in steps


def test_low_confidence_escalates_then_falls_back_without_hub(doubtful: BackgroundAgent) -> None:
    client = _client(doubtful)
    whole = client.chat.completions.create(model="auto", messages=QUESTION, max_tokens=12, temperature=0)
    info = _edgeroute(whole)
    decisions = [(s["stage"], s["decision"]) for s in info["trace"]]
    assert decisions == [("policy", "escalate"), ("hub", "fallback"), ("edge_local", "answer")]
    assert "< 1.000" in info["trace"][0]["reason"]
    # the fallback continues the draft: streaming gives the same text as the collected answer
    streamed = client.chat.completions.create(
        model="auto", messages=QUESTION, max_tokens=12, temperature=0, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == whole.choices[0].message.content


def test_override_header_forces_local_even_when_doubtful(doubtful: BackgroundAgent) -> None:
    done = _client(doubtful).chat.completions.create(
        model="auto", messages=QUESTION, max_tokens=4, extra_headers={"x-edgeroute-route": "edge_local"}
    )
    trace = _edgeroute(done)["trace"]
    assert trace[0]["reason"] == "route forced to edge_local by the request header"
    assert [s["stage"] for s in trace] == ["policy", "edge_local"]


def test_body_override_forces_hub(confident: BackgroundAgent) -> None:
    done = _client(confident).chat.completions.create(
        model="auto", messages=QUESTION, max_tokens=4, extra_body={"edgeroute": {"route": "hub"}}
    )
    trace = _edgeroute(done)["trace"]
    assert trace[0]["reason"] == "route forced to the hub by the request body"
    assert trace[1]["stage"] == "hub" and trace[1]["decision"] == "fallback"
