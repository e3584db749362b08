"""Overload at the edge, against a real agent (SmolLM2 on llama.cpp, real HTTP): a burst beyond
the local model's bounded queue is refused at once with 429 and ``Retry-After``, what was admitted
is answered, and the next request after the burst is served without a restart; with admission off
the same burst is queued whole. Oversized prompts are refused before they reach the model.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_agent.app import create_app
from edge_agent.backends.llamacpp import LlamaCppBackend
from edge_agent.serving import BackgroundAgent
from shared.config import AdmissionSettings, EdgeSettings

STORY = "Write a long story about a dragon who learns to bake bread, in at least five paragraphs."
BURST = 24


@dataclass(frozen=True)
class Result:
    status: int
    seconds: float
    headers: httpx.Headers
    body: dict[str, Any]


def _chat(content: str, max_tokens: int, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": content}]
    return {"model": "auto", "messages": messages, "max_tokens": max_tokens, "temperature": 1.0, **extra}


async def _post(client: httpx.AsyncClient, body: dict[str, Any]) -> Result:
    started = time.perf_counter()
    r = await client.post("/v1/chat/completions", json=body)
    return Result(r.status_code, time.perf_counter() - started, r.headers, r.json())


async def _burst(base_url: str, bodies: list[dict[str, Any]]) -> list[Result]:
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as client:
        return list(await asyncio.gather(*(_post(client, b) for b in bodies)))


def start_agent(
    backend: LlamaCppBackend, home: Path, admission: AdmissionSettings | None = None
) -> BackgroundAgent:
    """No hub and threshold 0: every request is answered by the local model."""
    settings = EdgeSettings(home=home, confidence_threshold=0.0, admission=admission or AdmissionSettings())
    return BackgroundAgent(create_app(settings, backend, owns_backend=False))


@pytest.fixture
def agent(
    smollm_backend: LlamaCppBackend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackgroundAgent]:
    with start_agent(smollm_backend, tmp_path_factory.mktemp("edge")) as running:
        yield running


@pytest.mark.slow
def test_a_burst_past_the_local_queue_is_refused_fast_and_the_edge_recovers(agent: BackgroundAgent) -> None:
    results = asyncio.run(_burst(agent.base_url, [_chat(STORY, 200, seed=i) for i in range(BURST)]))
    ended = time.perf_counter()
    answered = [r for r in results if r.status == 200]
    refused = [r for r in results if r.status == 429]
    assert len(answered) + len(refused) == BURST, [r.status for r in results]
    # default sizing: one run at a time plus four queued behind it
    assert len(answered) == 1 + 4
    for r in refused:
        assert int(r.headers["Retry-After"]) >= 1
        error = r.body["error"]
        assert error["type"] == "rate_limit_error" and error["code"] == "overloaded"
    slowest_refusal = max(r.seconds for r in refused)
    assert slowest_refusal < 1.0
    assert all(r.body["choices"][0]["message"]["content"] for r in answered)
    # recovery: the next request is admitted and answered, nothing restarted
    started = time.perf_counter()
    with httpx.Client(base_url=agent.base_url, timeout=120) as client:
        after = client.post("/v1/chat/completions", json=_chat("Say hi.", 8))
    recovery_s = time.perf_counter() - started
    assert after.status_code == 200, after.text
    with httpx.Client(base_url=agent.base_url, timeout=30) as client:
        gate = client.get("/health").json()["admission"]["edge_local"]
    assert gate == {"in_progress": 0, "limit": 5, "refused": len(refused)}  # every place given back
    print(
        f"\nburst {BURST}: {len(answered)} answered (slowest {max(r.seconds for r in answered):.1f} s), "
        f"{len(refused)} refused (median {statistics.median(r.seconds for r in refused) * 1000:.0f} ms, "
        f"slowest {slowest_refusal * 1000:.0f} ms, Retry-After "
        f"{sorted({r.headers['Retry-After'] for r in refused})}); next request answered "
        f"{time.perf_counter() - ended:.2f} s after the burst ended, in {recovery_s:.2f} s"
    )


def test_without_admission_the_burst_is_queued_whole(
    smollm_backend: LlamaCppBackend, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The negative control: the same burst shape, admission off, nothing refused, all queued."""
    home = tmp_path_factory.mktemp("edge")
    with start_agent(smollm_backend, home, AdmissionSettings(enabled=False)) as agent:
        asyncio.run(_burst(agent.base_url, [_chat("Say hi.", 8)]))  # a model's first run is slow
        results = asyncio.run(_burst(agent.base_url, [_chat("Say hi.", 8, seed=i) for i in range(BURST)]))
    assert [r.status for r in results] == [200] * BURST
    fastest, slowest = min(r.seconds for r in results), max(r.seconds for r in results)
    assert slowest > 4 * fastest  # one model: the last waited for all those ahead of it


def test_too_many_messages_are_refused_before_the_model_reads_them(agent: BackgroundAgent) -> None:
    """25,000 messages, 0.8 MB: once ~20 s of tokenizing in the model's one worker before the 400."""
    messages = [{"role": "user", "content": "hi"} for _ in range(25_000)]
    raw = json.dumps({"model": "auto", "messages": messages, "max_tokens": 8}, separators=(",", ":"))
    with httpx.Client(base_url=agent.base_url, timeout=120) as client:
        started = time.perf_counter()
        response = client.post("/v1/chat/completions", content=raw.encode())
        seconds = time.perf_counter() - started
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "messages" and error["code"] == "array_above_max_length"
    assert "2048" in error["message"] and "25000" in error["message"]
    assert seconds < 1.0
    print(f"\n25,000 messages ({len(raw) / 1e6:.2f} MB): 400 in {seconds * 1000:.0f} ms")


def test_a_prompt_too_long_by_its_bytes_is_refused_untokenized(agent: BackgroundAgent) -> None:
    """Under the message limit, 0.8 MB of text cannot fit 2048 tokens: refused without tokenizing."""
    messages = [{"role": "user", "content": "lorem ipsum dolor sit amet " * 400} for _ in range(75)]
    with httpx.Client(base_url=agent.base_url, timeout=120) as client:
        started = time.perf_counter()
        response = client.post("/v1/chat/completions", json={"model": "auto", "messages": messages})
        seconds = time.perf_counter() - started
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded" and "at least" in error["message"]
    assert seconds < 1.0


def test_a_long_prompt_is_refused_while_the_model_is_busy(agent: BackgroundAgent) -> None:
    """Counting a prompt's tokens happens beside the model's worker: an over-long prompt gets its
    400 while another request is still generating, not after it."""

    async def scenario() -> tuple[Result, Result]:
        async with httpx.AsyncClient(base_url=agent.base_url, timeout=600) as client:
            long_run = asyncio.create_task(_post(client, _chat(STORY, 200, seed=1)))
            await asyncio.sleep(1.0)  # the story is generating
            # 9,000 words: not refusable by bytes alone; tokenized, far past 2048 tokens
            too_long = await _post(client, _chat("word " * 9000, 8))
            return too_long, await long_run

    too_long, story = asyncio.run(scenario())
    assert too_long.status == 400 and too_long.body["error"]["code"] == "context_length_exceeded"
    assert story.status == 200
    assert too_long.seconds < story.seconds - 1.0
    print(f"\nover-long prompt: 400 in {too_long.seconds:.2f} s while a {story.seconds:.1f} s answer ran")
