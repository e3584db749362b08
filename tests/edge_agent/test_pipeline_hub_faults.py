"""Hub faults as the edge sees them, against a real in-process hub whose backends misbehave on
purpose (``tests.cloud_hub.helpers``: ``slow`` overruns deadlines, ``broken`` fails, ``flaky``
fails after its first streamed word). Everything between them is the real link: ZeroMQ, CURVE.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_agent.app import create_app
from edge_agent.backends.llamacpp import LlamaCppBackend
from edge_agent.hub_link import HubLink
from edge_agent.serving import BackgroundAgent
from shared.config import EdgeSettings
from tests.cloud_hub.helpers import build_hub, make_keys
from tests.edge_agent.live import hub_in_thread, sse_chunks, wait_hub

QUESTION = [{"role": "user", "content": "one two three"}]


@pytest.fixture(scope="module")
def agent(
    tmp_path_factory: pytest.TempPathFactory, smollm_backend: LlamaCppBackend
) -> Iterator[BackgroundAgent]:
    root: Path = tmp_path_factory.mktemp("faults")
    keys = make_keys(root)
    with hub_in_thread(build_hub(keys, max_frame=64 * 1024, heartbeat_s=0.3)) as hub:
        settings = EdgeSettings(
            home=root / "edge", confidence_threshold=0.0, hub_timeout_s=0.2, heartbeat_s=0.3
        )
        link = HubLink(hub.endpoint, keys.hub_public, keys.edge_secret_file, heartbeat_s=0.3)
        with BackgroundAgent(create_app(settings, smollm_backend, hub=link, owns_backend=False)) as running:
            wait_hub(running.base_url)
            yield running


def _chat(agent: BackgroundAgent, model: str) -> dict[str, Any]:
    body = {"model": model, "messages": QUESTION, "max_tokens": 8}
    response = httpx.post(f"{agent.base_url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def _fallback_reason(body: dict[str, Any]) -> str:
    info = body["edgeroute"]
    assert info["route"] == "edge_local" and info["fallback"] is True
    steps = {(s["stage"], s["decision"]): s for s in info["trace"]}
    reason: str = steps[("hub", "fallback")]["reason"]
    return reason


def test_hub_answering_too_late_falls_back(agent: BackgroundAgent) -> None:
    assert "Timeout" in _fallback_reason(_chat(agent, "hub:slow"))  # link deadline or edge timer


def test_hub_backend_error_falls_back(agent: BackgroundAgent) -> None:
    reason = _fallback_reason(_chat(agent, "hub:broken"))
    assert "HubError" in reason and "overloaded" in reason


def test_fast_hub_model_still_answers(agent: BackgroundAgent) -> None:
    body = _chat(agent, "hub:echo")
    assert body["edgeroute"]["route"] == "hub_oss"
    assert body["choices"][0]["message"]["content"] == "one two three"


def test_hub_failing_mid_stream_is_reported_in_band(agent: BackgroundAgent) -> None:
    body = {"model": "hub:flaky", "messages": QUESTION, "max_tokens": 8, "stream": True}
    events: list[dict[str, Any]] = []
    with httpx.stream("POST", f"{agent.base_url}/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["x-edgeroute-route"] == "hub_oss"
        events = sse_chunks(response)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c.get("choices"))
    assert text == "partial"  # what the hub sent before failing reached the client once
    assert events[-1]["error"]["code"] == "stream_interrupted"
    # and the agent keeps serving
    assert _chat(agent, "hub:echo")["edgeroute"]["route"] == "hub_oss"
