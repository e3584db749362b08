"""The SDK's model lookup, embeddings and cached-token count, sync and async, against a real agent
with caches and the ONNX embedder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge_agent.assemble import EMBEDDING_MODEL
from edge_agent.backends.llamacpp import LlamaCppBackend
from edge_agent.sdk import AsyncEdgeClient, EdgeAPIError, EdgeClient
from tests.edge_agent.api.full_agent import TENANTS, FullAgent, start_full_agent
from tests.edge_agent.conftest import SMOLLM

KEY = TENANTS["acme"]


@pytest.fixture(scope="module")
def full(
    smollm_backend: LlamaCppBackend, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FullAgent]:
    running = start_full_agent(smollm_backend, models_dir, tmp_path_factory.mktemp("sdk"))
    yield running
    running.stop()


def test_sync_model_lookup_and_embeddings(full: FullAgent) -> None:
    with EdgeClient(full.base_url, api_key=KEY) as client:
        assert client.model(SMOLLM).owned_by == "edge"
        assert client.model("auto").id == "auto"
        with pytest.raises(EdgeAPIError) as missing:
            client.model("no/such-model")
        assert missing.value.status == 404 and missing.value.code == "model_not_found"
        one = client.embed("a red apple")
        assert one.model == EMBEDDING_MODEL and len(one.vectors) == 1 and len(one.vectors[0]) == 384
        many = client.embed(["a red apple", "a green apple", "the bond market"], model=EMBEDDING_MODEL)
        vectors = np.array(many.vectors)
        assert np.allclose(vectors[0], one.vectors[0], atol=1e-6)
        assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
        assert many.prompt_tokens > one.prompt_tokens > 0


def test_sync_cache_hit_reports_cached_tokens(full: FullAgent) -> None:
    with EdgeClient(full.base_url, api_key=KEY) as client:
        first = client.chat("Name a planet.", max_tokens=6, temperature=0)
        full.agent.drain()
        again = client.chat("Name a planet.", max_tokens=6, temperature=0)
    assert first.cached_tokens == 0
    assert again.route == "exact_cache" and again.text == first.text
    assert again.cached_tokens == again.usage.prompt_tokens == first.usage.prompt_tokens > 0


async def test_async_model_lookup_and_embeddings(full: FullAgent) -> None:
    async with AsyncEdgeClient(full.base_url, api_key=KEY) as client:
        assert (await client.model(EMBEDDING_MODEL)).id == EMBEDDING_MODEL
        result = await client.embed(["one", "two"])
        assert len(result.vectors) == 2 and result.model == EMBEDDING_MODEL
        with pytest.raises(EdgeAPIError) as bad:
            await client.embed([])
        assert bad.value.status == 400 and bad.value.param == "input"
