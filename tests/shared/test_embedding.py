from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from models.manifest import artifact_path
from shared.embedding import Embedder, EmbedderClosed, OnnxEmbedder

pytestmark = pytest.mark.slow

SENTENCES = [
    "How do I reverse a list in Python?",
    "What is the capital of France?",
    "Write a function that checks whether a number is prime.",
    "The invoice total must include the sales tax for each region.",
    "Explain the difference between a process and a thread.",
    "ok",
]


@pytest.fixture(scope="module")
def model_folder(models_dir: Path) -> Path:
    return artifact_path("minilm-l6-v2-onnx", models_dir)


@pytest.fixture(scope="module")
def embedder(model_folder: Path) -> OnnxEmbedder:
    return OnnxEmbedder(model_folder, threads=2)


def test_shape_dtype_and_unit_norm(embedder: OnnxEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    assert embedder.dim == 384
    v = embedder.embed(SENTENCES)
    assert v.shape == (len(SENTENCES), 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert embedder.embed([]).shape == (0, 384)
    one = embedder.embed_one(SENTENCES[1])
    assert one.shape == (384,)


def test_paraphrases_are_closer_than_unrelated(embedder: OnnxEmbedder) -> None:
    pairs = [
        ("How do I reverse a list in Python?", "What is the way to reverse a Python list?"),
        ("What is the capital of France?", "Which city is France's capital?"),
        ("How can I lose weight quickly?", "What is the fastest way to lose weight?"),
    ]
    a = embedder.embed([p[0] for p in pairs])
    b = embedder.embed([p[1] for p in pairs])
    sims = a @ b.T
    for i in range(len(pairs)):
        unrelated = np.delete(sims[i], i)
        assert sims[i, i] > 0.75
        assert sims[i, i] > unrelated.max() + 0.3, (pairs[i], sims[i])


def test_int8_agrees_with_fp32(embedder: OnnxEmbedder, model_folder: Path) -> None:
    with OnnxEmbedder(model_folder, model_file="model_fp32.onnx") as fp32:
        ref = fp32.embed(SENTENCES[:5])
    cos = (embedder.embed(SENTENCES[:5]) * ref).sum(axis=1)
    assert cos.min() >= 0.98, cos


def test_batching_and_order_do_not_change_results(model_folder: Path) -> None:
    # fp32: int8 quantises activations per batch, so only fp32 is batch-invariant to this tolerance
    texts = [f"{s} (variant {i})" for i in range(7) for s in SENTENCES]
    with OnnxEmbedder(model_folder, batch_size=4, model_file="model_fp32.onnx") as small:
        batched = small.embed(texts)
        singles = np.stack([small.embed_one(t) for t in texts[:6]])
        shuffled = small.embed(texts[::-1])[::-1]
    np.testing.assert_allclose(batched[:6], singles, atol=1e-4)
    np.testing.assert_allclose(batched, shuffled, atol=1e-4)


def test_long_input_is_truncated_not_rejected(embedder: OnnxEmbedder) -> None:
    long = "token " * 5000
    v = embedder.embed([long, long + " more"])
    # both truncate to the same first 128 tokens
    np.testing.assert_allclose(v[0], v[1], atol=1e-5)


def test_concurrent_callers_get_the_serial_answers(embedder: OnnxEmbedder) -> None:
    expected = [embedder.embed_one(s) for s in SENTENCES]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(embedder.embed_one, SENTENCES * 4))
    for i, vec in enumerate(got):
        np.testing.assert_allclose(vec, expected[i % len(SENTENCES)], atol=1e-5)


def test_bad_input_and_close(model_folder: Path, tmp_path: Path) -> None:
    emb = OnnxEmbedder(model_folder)
    with pytest.raises(TypeError, match="list of strings"):
        emb.embed("not a list")
    emb.close()
    emb.close()
    with pytest.raises(EmbedderClosed):
        emb.embed(["after close"])
    with pytest.raises(FileNotFoundError, match="edgeroute-models install minilm-l6-v2-onnx"):
        OnnxEmbedder(tmp_path)
    with pytest.raises(ValueError, match="max_length"):
        OnnxEmbedder(model_folder, max_length=1)
    with pytest.raises(ValueError, match="exceeds the model's 512 positions"):
        OnnxEmbedder(model_folder, max_length=513)
    with OnnxEmbedder(model_folder, max_length=512) as full:
        assert full.embed(["word " * 2000]).shape == (1, 384)
