"""``/metrics`` on the agent as ``edge-agent serve`` assembles it: each fact about an answer is
exported by one series family, counted once per answer, streamed or not; the HTTP series count
requests, not answers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from edge_agent.assemble import build_app
from edge_agent.serving import BackgroundAgent
from shared.config import CacheSettings, EdgeSettings, LocalModelConfig
from tests.edge_agent.conftest import SMOLLM

CHAT = "/v1/chat/completions"
# the per-route families an answered local request feeds, and the only ones that carry a route
ANSWER_FAMILIES = {
    "edgeroute_requests",
    "edgeroute_cost_usd",
    "edgeroute_tokens",
    "edgeroute_request_duration_seconds",
    "edgeroute_time_to_first_token_seconds",
}


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, smollm_gguf: Path) -> Iterator[BackgroundAgent]:
    # no cache, so both questions are answered by the local model and each feeds the same series
    local = LocalModelConfig(name=SMOLLM, path=smollm_gguf, n_ctx=2048, n_threads=1)
    settings = EdgeSettings(
        home=tmp_path_factory.mktemp("edge"),
        local_model=local,
        confidence_threshold=0.0,
        cache=CacheSettings(enabled=False),
    )
    with BackgroundAgent(asyncio.run(build_app(settings))) as running:
        yield running


def _body(question: str, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": question}]
    return {"model": "auto", "messages": messages, "max_tokens": 6, "temperature": 0, **extra}


def _streamed(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    """The stream's last data chunk (usage and the ``edgeroute`` field)."""
    with http.stream("POST", CHAT, json=body) as response:
        assert response.status_code == 200
        chunks = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert chunks[-1] == "[DONE]"
    last: dict[str, Any] = json.loads(chunks[-2])
    return last


def _families(http: httpx.Client, answers: int) -> dict[str, list[Sample]]:
    """Every family on ``/metrics``, once ``answers`` answers are counted: the bookkeeping of an
    answer may finish just after its response is sent."""
    deadline = time.monotonic() + 10.0
    while True:
        text = http.get("/metrics").text
        # the text format writes each series' creation time as a ``<family>_created`` gauge of its own
        parsed = text_string_to_metric_families(text)
        families = {f.name: f.samples for f in parsed if not f.name.endswith("_created")}
        counted = sum(s.value for s in families.get("edgeroute_requests", []) if s.name.endswith("_total"))
        if counted >= answers or time.monotonic() > deadline:
            return families
        time.sleep(0.05)


def _total(samples: list[Sample], suffix: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples
        if s.name.endswith(suffix) and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_each_answer_fact_is_exported_once(agent: BackgroundAgent) -> None:
    with httpx.Client(base_url=agent.base_url, timeout=120) as http:
        plain = http.post(CHAT, json=_body("What is TCP?"))
        assert plain.status_code == 200 and plain.headers["x-edgeroute-route"] == "edge_local"
        streamed = _streamed(
            http, _body("Name a colour.", stream=True, stream_options={"include_usage": True})
        )
        assert streamed["edgeroute"]["route"] == "edge_local"
        families = _families(http, answers=2)

    answers = [plain.json(), streamed]
    requests = families["edgeroute_requests"]
    assert _total(requests, "_total") == 2
    assert _total(requests, "_total", route="edge_local", streamed="false", model=SMOLLM) == 1
    assert _total(requests, "_total", route="edge_local", streamed="true", model=SMOLLM) == 1
    output = _total(families["edgeroute_tokens"], "_total", route="edge_local", direction="output")
    assert output == sum(a["usage"]["completion_tokens"] for a in answers) > 0
    cost = _total(families["edgeroute_cost_usd"], "_total", route="edge_local")
    assert cost == pytest.approx(sum(a["edgeroute"]["cost_usd"] for a in answers))
    assert _total(families["edgeroute_local_confidence"], "_count") == 2
    assert _total(families["edgeroute_request_duration_seconds"], "_count", route="edge_local") == 2

    # no other family counts answers by route, and the HTTP layer's own series count requests
    by_route = {name for name, samples in families.items() if any("route" in s.labels for s in samples)}
    assert by_route == ANSWER_FAMILIES
    assert not [name for name in families if name.startswith("edgeroute_answer")]
    assert _total(families["edgeroute_http_requests"], "_total", endpoint=CHAT, status="200") == 2
