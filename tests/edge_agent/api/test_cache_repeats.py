"""Repeats hit the cache at the sampling clients actually send (no temperature, no seed: the
OpenAI default of 1.0), through the real openai client against a real agent and SQLite cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from edge_agent.backends.llamacpp import LlamaCppBackend
from tests.edge_agent.conftest import SMOLLM
from tests.edge_agent.live import cached_agent


@pytest.fixture(scope="module")
def client(
    smollm_backend: LlamaCppBackend, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[openai.OpenAI]:
    with cached_agent(tmp_path_factory.mktemp("edge"), smollm_backend, models_dir) as running:
        yield openai.OpenAI(base_url=f"{running.base_url}/v1", api_key="unused", max_retries=0)


def _routes(
    client: openai.OpenAI,
    question: str,
    times: int,
    temperature: float | None = None,
    seed: int | None = None,
) -> list[str]:
    routes = []
    for _ in range(times):
        raw = client.chat.completions.with_raw_response.create(
            model=SMOLLM,
            messages=[{"role": "user", "content": question}],
            max_tokens=6,
            temperature=temperature,
            seed=seed,
        )
        routes.append(raw.headers["x-edgeroute-route"])
    return routes


def test_repeats_at_default_sampling_are_served_once_the_pool_is_ready(client: openai.OpenAI) -> None:
    # a sampling model fills a pool of pool_size (3) distinct answers, or fewer if it repeats
    # itself; from then on repeats are served from it, never the answer just served
    routes = _routes(client, "Name one primary colour.", 5)
    assert routes[0] == "edge_local"
    assert routes[3:] == ["exact_cache", "exact_cache"], routes


def test_a_seeded_repeat_hits_and_another_seed_does_not(client: openai.OpenAI) -> None:
    question = "Name one planet."
    assert _routes(client, question, 2, temperature=0.9, seed=7) == ["edge_local", "exact_cache"]
    assert _routes(client, question, 1, temperature=0.9, seed=8) == ["edge_local"]
