"""``POST /v1/embeddings`` through the official ``openai`` client, against a real agent whose
semantic cache and endpoint share one ONNX embedder (MiniLM, 384 dimensions)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from edge_agent.assemble import EMBEDDING_MODEL
from edge_agent.backends.llamacpp import LlamaCppBackend
from models.manifest import artifact_path
from shared.embedding import OnnxEmbedder
from tests.edge_agent.api.full_agent import TENANTS, FullAgent, start_full_agent

DIM = 384


@pytest.fixture(scope="module")
def full(
    smollm_backend: LlamaCppBackend, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FullAgent]:
    running = start_full_agent(smollm_backend, models_dir, tmp_path_factory.mktemp("embeddings"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def reference(models_dir: Path) -> Iterator[OnnxEmbedder]:
    """The same model loaded on its own, to check the endpoint returns what the model computes."""
    with OnnxEmbedder(artifact_path(EMBEDDING_MODEL, models_dir)) as embedder:
        yield embedder


def _client(full: FullAgent) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{full.base_url}/v1", api_key=TENANTS["acme"], max_retries=0)


def _post(full: FullAgent, **body: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {TENANTS['acme']}"}
    return httpx.post(f"{full.base_url}/v1/embeddings", json=body, headers=headers, timeout=60)


def test_openai_client_embeds_a_string_and_a_list(full: FullAgent, reference: OnnxEmbedder) -> None:
    client = _client(full)
    one = client.embeddings.create(model=EMBEDDING_MODEL, input="The cat sat on the mat.")
    assert one.object == "list" and one.model == EMBEDDING_MODEL
    [row] = one.data
    assert row.index == 0 and row.object == "embedding" and len(row.embedding) == DIM
    # the client asks for base64 by default and decodes it: same floats as the model's own
    expected = reference.embed(["The cat sat on the mat."])[0]
    assert np.allclose(row.embedding, expected, atol=1e-6)
    assert (
        one.usage.prompt_tokens
        == one.usage.total_tokens
        == reference.token_counts(["The cat sat on the mat."])[0]
    )
    texts = ["A kitten rests on a rug.", "Stock markets fell sharply today.", "The cat sat on the mat."]
    many = client.embeddings.create(model="auto", input=texts, encoding_format="float")
    vectors = np.array([d.embedding for d in many.data])
    assert [d.index for d in many.data] == [0, 1, 2] and vectors.shape == (3, DIM)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert np.allclose(vectors[2], expected, atol=1e-6)
    similar, unrelated = vectors[0] @ vectors[2], vectors[1] @ vectors[2]
    assert similar > unrelated + 0.2
    assert many.usage.prompt_tokens == sum(reference.token_counts(texts))


def test_base64_is_little_endian_float32(full: FullAgent, reference: OnnxEmbedder) -> None:
    response = _post(full, model=EMBEDDING_MODEL, input=["hello"], encoding_format="base64")
    assert response.status_code == 200
    raw = base64.b64decode(response.json()["data"][0]["embedding"])
    assert np.allclose(np.frombuffer(raw, dtype="<f4"), reference.embed(["hello"])[0], atol=1e-6)


def test_dimensions_must_be_the_models_own(full: FullAgent) -> None:
    assert _post(full, model=EMBEDDING_MODEL, input="x", dimensions=DIM).status_code == 200
    with pytest.raises(openai.BadRequestError) as bad:
        _client(full).embeddings.create(model=EMBEDDING_MODEL, input="x", dimensions=64)
    assert isinstance(bad.value.body, dict) and bad.value.body["param"] == "dimensions"


@pytest.mark.parametrize(
    ("body", "param", "status"),
    [
        ({"input": [1, 2, 3]}, "input.0", 400),
        ({"input": [[1, 2], [3]]}, "input.0", 400),
        ({"input": []}, "input", 400),
        ({"input": ["ok"] * 2049}, "input", 400),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format", 400),
        ({"input": "x", "dimensions": 0}, "dimensions", 400),
        ({"input": "x", "model": "text-embedding-3-small"}, "model", 404),
        ({"input": "x", "temperature": 0}, "temperature", 400),
        ({"input": "word " * 200}, "input", 400),
        ({"input": ["short", "word " * 200]}, "input.1", 400),
    ],
)
def test_bad_requests(full: FullAgent, body: dict[str, Any], param: str, status: int) -> None:
    response = _post(full, **{"model": EMBEDDING_MODEL, **body})
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param


def test_too_long_inputs_say_how_long(full: FullAgent) -> None:
    error = _post(full, model=EMBEDDING_MODEL, input="word " * 200).json()["error"]
    assert error["code"] == "context_length_exceeded" and "128" in error["message"]


def test_embeddings_need_a_tenant_key(full: FullAgent) -> None:
    response = httpx.post(f"{full.base_url}/v1/embeddings", json={"model": "auto", "input": "x"})
    assert response.status_code == 401


def test_a_chat_request_for_the_embedding_model_says_what_it_is(full: FullAgent) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        _client(full).chat.completions.create(
            model=EMBEDDING_MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    assert "/v1/embeddings" in str(bad.value)
