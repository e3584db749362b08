"""What the hub refuses as invalid reaches the client as that 4xx instead of a local answer, while a
hub that fails still leaves the local draft to finish the answer; a stream through the hub names
one model from its first chunk to its last (a real ``cloud-hub serve``
with its echo backend over CURVE, SmolLM2 on the edge, the official ``openai`` client).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from edge_agent.backends.llamacpp import LlamaCppBackend
from edge_agent.serving import BackgroundAgent
from tests.cloud_hub.helpers import HubProcess
from tests.edge_agent.live import edge_settings, hub_process, linked_agent, sse_chunks

QUESTION = "alpha beta gamma delta"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    # "unreachable" fails on every call (nothing listens on port 9): a hub failure, not a refusal
    unreachable = {"name": "unreachable", "backend": "openai_http", "base_url": "http://127.0.0.1:9/v1"}
    models: list[dict[str, object]] = [{"name": "echo", "backend": "echo", "tier": "oss"}]
    models.append({**unreachable, "tier": "frontier"})
    with hub_process(tmp_path_factory.mktemp("refusals"), models, "echo") as process:
        yield process


@pytest.fixture(scope="module")
def agent(hub: HubProcess, smollm_backend: LlamaCppBackend) -> Iterator[BackgroundAgent]:
    """Threshold 1.0: every unforced request escalates after its draft."""
    settings = edge_settings(hub, confidence_threshold=1.0, draft_tokens=4)
    with linked_agent(settings, smollm_backend) as running:
        yield running


def _client(agent: BackgroundAgent) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{agent.base_url}/v1", api_key="unused", max_retries=0, timeout=60)


def _chat(agent: BackgroundAgent, **extra: Any) -> httpx.Response:
    body = {"model": "auto", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 8, **extra}
    return httpx.post(f"{agent.base_url}/v1/chat/completions", json=body, timeout=60)


def test_unknown_hub_model_is_a_404_not_a_local_answer(agent: BackgroundAgent) -> None:
    client = _client(agent)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="hub:nonexistent", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found"
    error = missing.value.body
    assert isinstance(error, dict) and error["param"] == "model"
    assert "nonexistent" in error["message"] and "Error" not in error["message"]
    with pytest.raises(openai.NotFoundError):
        stream = client.chat.completions.create(
            model="hub:nonexistent", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        list(stream)
    # the same refusal for a hub model named in the body's override
    response = _chat(agent, edgeroute={"hub_model": "no-such-model"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"


def test_a_failing_hub_model_still_resumes_the_local_draft(agent: BackgroundAgent) -> None:
    local = _chat(agent, temperature=0, max_tokens=12, edgeroute={"route": "edge_local"}).json()
    failed = _chat(agent, temperature=0, max_tokens=12, edgeroute={"hub_model": "unreachable"})
    assert failed.status_code == 200, failed.text
    body = failed.json()
    steps = [(s["stage"], s["decision"]) for s in body["edgeroute"]["trace"]]
    assert steps == [("policy", "escalate"), ("hub", "fallback"), ("edge_local", "answer")]
    assert "backend_error" in body["edgeroute"]["trace"][1]["reason"]
    assert body["edgeroute"]["fallback"] is True
    # the draft was stopped for the escalation and then continued: same greedy text, same length
    assert body["choices"][0]["message"]["content"] == local["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] == local["usage"]["completion_tokens"]


def test_top_p_zero_is_answered_by_the_hub(agent: BackgroundAgent) -> None:
    # the OpenAI range, which the edge accepts: the hub serves it greedily instead of refusing it
    response = _chat(agent, model="hub", top_p=0.0)
    assert response.status_code == 200, response.text
    assert response.json()["edgeroute"]["route"] == "hub_oss"


def test_huge_integers_never_reach_the_link(agent: BackgroundAgent) -> None:
    for field in ("max_tokens", "seed"):
        response = _chat(agent, **{field: 2**70})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == field


def test_a_hub_stream_names_one_model_throughout(agent: BackgroundAgent) -> None:
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": 8,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream("POST", f"{agent.base_url}/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200 and response.headers["x-edgeroute-route"] == "hub_oss"
        chunks = sse_chunks(response)
    assert len(chunks) >= 4
    assert {c["model"] for c in chunks} == {"echo"}  # the model that answers, from the first chunk
    final = _chat(agent).json()
    assert final["model"] == "echo"
    usage = chunks[-1]["usage"]
    assert usage == final["usage"]  # streamed or not, usage is reported the same way
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}


def test_the_hub_still_answers_after_refusals(agent: BackgroundAgent) -> None:
    response = _chat(agent)
    assert response.status_code == 200 and response.headers["x-edgeroute-route"] == "hub_oss"
    assert response.json()["choices"][0]["message"]["content"] == QUESTION


def test_hub_models_can_be_retrieved_by_either_id(agent: BackgroundAgent) -> None:
    client = _client(agent)
    assert client.models.retrieve("echo").owned_by == "hub"
    assert client.models.retrieve("hub:echo").id == "hub:echo"
    assert client.models.retrieve("hub").owned_by == "hub"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("hub:nonexistent")
