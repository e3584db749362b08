"""Escalation through a real hub process (CURVE + ZAP over loopback) with its model-free echo
backend, so every routing path is exercised in seconds: hub answers, hub streams, hub errors
(the local draft is resumed), hub down (local fallback) and hub back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from edge_agent.backends.llamacpp import LlamaCppBackend
from edge_agent.serving import BackgroundAgent
from tests.cloud_hub.helpers import HubProcess
from tests.edge_agent.live import (
    edge_settings,
    hub_process,
    linked_agent,
    sse_chunks,
    streamed_text,
    wait_hub,
)

QUESTION = "alpha beta gamma delta"
HUB_COST = {"usd_per_1k_prompt": 0.5, "usd_per_1k_completion": 1.5}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    models: list[dict[str, object]] = [
        {"name": "echo", "backend": "echo", "tier": "oss", "cost": HUB_COST},
        {"name": "frontier-echo", "backend": "echo", "tier": "frontier"},
    ]
    with hub_process(tmp_path_factory.mktemp("link"), models, "echo") as process:
        yield process


@pytest.fixture(scope="module")
def agent(hub: HubProcess, smollm_backend: LlamaCppBackend) -> Iterator[BackgroundAgent]:
    """Threshold 1.0: every unforced request escalates after its draft."""
    settings = edge_settings(hub, confidence_threshold=1.0, draft_tokens=6)
    with linked_agent(settings, smollm_backend) as running:
        yield running


def _chat(agent: BackgroundAgent, **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", {})
    body = {"model": "auto", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 24, **extra}
    return httpx.post(f"{agent.base_url}/v1/chat/completions", json=body, headers=headers, timeout=120)


def _steps(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["stage"], s["decision"]) for s in body["edgeroute"]["trace"]]


def _stream(agent: BackgroundAgent, **extra: Any) -> tuple[httpx.Headers, str, dict[str, Any]]:
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": 24,
        "stream": True,
        **extra,
    }
    with httpx.stream("POST", f"{agent.base_url}/v1/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        text, last = streamed_text(sse_chunks(response))
        return response.headers, text, last


def test_low_confidence_is_answered_by_the_hub(agent: BackgroundAgent) -> None:
    response = _chat(agent, temperature=0)
    body = response.json()
    assert response.headers["x-edgeroute-route"] == "hub_oss"
    assert body["choices"][0]["message"]["content"] == QUESTION  # the echo model's answer
    assert body["model"] == "echo"
    # the hub explains its tier plan (default model first, the frontier tier as its fallback)
    assert _steps(body) == [
        ("policy", "escalate"),
        ("policy", "route"),
        ("hub_oss", "chosen"),
        ("frontier", "fallback"),
        ("hub_oss", "answer"),
        ("hub", "reply"),
    ]
    info = body["edgeroute"]
    assert "< 1.000" in info["trace"][0]["reason"]
    hub_cost = info["trace"][-1]["detail"]["cost_usd"]
    assert hub_cost > 0 and info["cost_usd"] > hub_cost  # hub price plus the local draft's energy
    assert 0 < info["confidence"] < 1  # the draft's confidence travels with the answer


def test_streaming_through_the_hub(agent: BackgroundAgent) -> None:
    headers, text, last = _stream(agent, stream_options={"include_usage": True})
    assert headers["x-edgeroute-route"] == "hub_oss"
    assert text == QUESTION
    assert last["edgeroute"]["route"] == "hub_oss"
    assert last["usage"]["completion_tokens"] == len(QUESTION.split())


def test_streamed_frontier_answer_says_so_in_the_header(agent: BackgroundAgent) -> None:
    headers, text, last = _stream(agent, model="hub:frontier-echo")
    assert headers["x-edgeroute-route"] == last["edgeroute"]["route"] == "frontier"
    assert text == QUESTION


def test_hub_model_named_in_the_request(agent: BackgroundAgent) -> None:
    response = _chat(agent, model="hub:frontier-echo")
    body = response.json()
    assert response.headers["x-edgeroute-route"] == "frontier"
    assert _steps(body)[0] == ("policy", "escalate")
    assert "forced to the hub" in body["edgeroute"]["trace"][0]["reason"]
    models = httpx.get(f"{agent.base_url}/v1/models").json()["data"]
    assert {"echo", "frontier-echo"} <= {m["id"] for m in models}
    assert _chat(agent, model="frontier-echo").headers["x-edgeroute-route"] == "frontier"


def test_unknown_hub_model_is_refused_not_answered_locally(agent: BackgroundAgent) -> None:
    # a request the hub refuses as invalid gets that 4xx; a hub that *fails* still leaves the
    # local draft to finish (tests/edge_agent/api/test_hub_refusals.py)
    for stream in (False, True):
        refused = _chat(agent, temperature=0, stream=stream, edgeroute={"hub_model": "no-such-model"})
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "model_not_found"


def test_hub_down_answers_locally_and_recovers(agent: BackgroundAgent, hub: HubProcess) -> None:
    hub.kill()
    wait_hub(agent.base_url, "disconnected")
    body = _chat(agent).json()
    assert body["edgeroute"]["route"] == "edge_local"
    steps = {(s["stage"], s["decision"]): s["reason"] for s in body["edgeroute"]["trace"]}
    assert "hub not connected" in steps[("hub", "fallback")]
    forced = _chat(agent, model="hub").json()
    assert forced["edgeroute"]["route"] == "edge_local" and forced["edgeroute"]["fallback"] is True
    hub.bind = hub.endpoint  # same port, so the edge's reconnect finds it
    hub.start()
    wait_hub(agent.base_url)
    again = _chat(agent)
    assert again.headers["x-edgeroute-route"] == "hub_oss"
    assert again.json()["choices"][0]["message"]["content"] == QUESTION
