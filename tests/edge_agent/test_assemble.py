"""The agent as ``edge-agent serve`` assembles it: local model, caches and telemetry spool."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge_agent.assemble import build_app
from edge_agent.serving import BackgroundAgent
from edge_agent.telemetry.spool import TelemetrySpool
from shared.config import EdgeSettings, LocalModelConfig

QUESTION = {"role": "user", "content": "What colour is the sky on a clear day?"}


@pytest.fixture(scope="module")
def assembled(
    tmp_path_factory: pytest.TempPathFactory, smollm_gguf: Path
) -> Iterator[tuple[BackgroundAgent, Path]]:
    home = tmp_path_factory.mktemp("edge")
    local = LocalModelConfig(name="smollm2-135m-instruct", path=smollm_gguf, n_ctx=2048, n_threads=1)
    settings = EdgeSettings(home=home, local_model=local, confidence_threshold=0.0)
    app = asyncio.run(build_app(settings))
    with BackgroundAgent(app) as agent:
        yield agent, home


def _ask(agent: BackgroundAgent) -> httpx.Response:
    body = {"model": "auto", "messages": [QUESTION], "max_tokens": 12, "temperature": 0}
    return httpx.post(f"{agent.base_url}/v1/chat/completions", json=body, timeout=120)


def test_repeat_question_is_served_from_the_exact_cache(assembled: tuple[BackgroundAgent, Path]) -> None:
    agent, _ = assembled
    first = _ask(agent)
    assert first.headers["x-edgeroute-route"] == "edge_local"
    first_steps = [(s["stage"], s["decision"]) for s in first.json()["edgeroute"]["trace"]]
    assert first_steps[0] == ("exact_cache", "miss")
    second = _ask(agent)
    assert second.headers["x-edgeroute-route"] == "exact_cache"
    body = second.json()
    assert body["choices"][0]["message"]["content"] == first.json()["choices"][0]["message"]["content"]
    assert body["edgeroute"]["trace"][0]["decision"] == "hit"
    assert body["edgeroute"]["cost_usd"] == 0.0


def test_an_unrelated_question_misses_every_cache(assembled: tuple[BackgroundAgent, Path]) -> None:
    agent, _ = assembled
    other = {"role": "user", "content": "Name a prime number greater than ten."}
    body = {"model": "auto", "messages": [other], "max_tokens": 12, "temperature": 0}
    response = httpx.post(f"{agent.base_url}/v1/chat/completions", json=body, timeout=120)
    assert response.headers["x-edgeroute-route"] == "edge_local"
    caches = [s for s in response.json()["edgeroute"]["trace"] if s["stage"].endswith("_cache")]
    assert caches and all(s["decision"] != "hit" for s in caches)


def test_every_answer_is_spooled_and_counted(assembled: tuple[BackgroundAgent, Path]) -> None:
    agent, home = assembled
    _ask(agent)
    agent.drain()  # the spool is read from here, not through the agent
    metrics = httpx.get(f"{agent.base_url}/metrics").text
    assert "edgeroute_requests_total{" in metrics and 'route="exact_cache"' in metrics
    assert "edgeroute_http_requests_total" in metrics
    spool = TelemetrySpool(home / "telemetry.db")
    try:
        assert spool.stats().pending_events >= 1  # no hub here: events wait in the spool
    finally:
        spool.close()


def test_feedback_is_recorded(assembled: tuple[BackgroundAgent, Path]) -> None:
    agent, _ = assembled
    answer = _ask(agent)
    request_id = answer.headers["x-request-id"]
    url = f"{agent.base_url}/v1/feedback"
    stars = httpx.post(url, json={"response_id": request_id, "stars": 5})
    assert stars.status_code == 200 and stars.json()["rating"] == 1.0
    assert httpx.post(url, json={"response_id": request_id, "thumbs": "down"}).json()["rating"] == -1.0
    both = httpx.post(url, json={"response_id": request_id, "thumbs": "up", "stars": 2})
    assert both.status_code == 400
    assert httpx.post(url, json={"response_id": request_id, "rating": 3}).status_code == 400
    metrics = httpx.get(f"{agent.base_url}/metrics").text
    assert 'edgeroute_feedback_total{sentiment="positive"} 1.0' in metrics
    assert 'edgeroute_feedback_total{sentiment="negative"} 1.0' in metrics
