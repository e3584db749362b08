from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.cache_judge import LEXICAL, JudgeHead, fit_head, lexical_features, pair_features
from shared.embedding import OnnxEmbedder, Vectors
from shared.pair_vectors import pair_cosines, pair_vectors
from shared.paraphrase import Pair


def unit(rng: np.random.Generator, n: int, d: int) -> Vectors:
    x = rng.standard_normal((n, d)).astype(np.float32)
    out: Vectors = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def test_pair_features_are_symmetric_in_the_vectors_and_shaped_per_pair() -> None:
    rng = np.random.default_rng(0)
    a, b = unit(rng, 5, 8), unit(rng, 5, 8)
    texts = ["what is 2 plus 2"] * 5
    x = pair_features(a, b, texts, texts)
    assert x.shape == (5, 2 * 8 + 1 + len(LEXICAL))
    assert np.allclose(x, pair_features(b, a, texts, texts))
    assert np.allclose(x[:, 16], np.einsum("ij,ij->i", a, b))
    with pytest.raises(ValueError):
        pair_features(a, b[:4], texts, texts)


def test_lexical_features_see_changed_numbers() -> None:
    same = lexical_features("Convert 100 USD to EUR", "convert 100 usd to eur")
    changed = lexical_features("Convert 100 USD to EUR", "Convert 150 USD to EUR")
    assert same[0] == 1.0 and same[3] == 1.0
    assert changed[3] == 0.0 and changed[0] < 1.0


def test_fit_learns_a_direction_and_round_trips_through_json(tmp_path: Path) -> None:
    # label 1 when the pair agrees along dimension 0: the head must find that dimension
    rng = np.random.default_rng(3)
    a, b = unit(rng, 3000, 8), unit(rng, 3000, 8)
    y = (a[:, 0] * b[:, 0] > 0).astype(np.float64)
    texts = ["q"] * 3000
    x = pair_features(a, b, texts, texts)
    head = fit_head(x, y, dim=8, l2=1.0, meta={"data": "synthetic"})
    p = head.probabilities(a, b, texts, texts)
    assert ((p > 0.5) == (y == 1)).mean() > 0.8
    path = tmp_path / "judge.json"
    path.write_text(head.to_json())
    again = JudgeHead.load(path)
    assert np.allclose(again.probabilities(a, b, texts, texts), p, atol=1e-5)
    assert again.identity == JudgeHead.from_json(head.to_json()).identity
    with pytest.raises(ValueError, match="fitted on 8-d"):
        again.probabilities(unit(rng, 2, 4), unit(rng, 2, 4), ["q"] * 2, ["q"] * 2)


def test_weights_of_another_feature_set_are_refused() -> None:
    head = fit_head(np.eye(4, 2 * 1 + 1 + len(LEXICAL)), np.array([1.0, 0, 1, 0]), dim=1)
    raw = head.to_json().replace("minilm-pair-v1", "other-v0")
    with pytest.raises(ValueError, match="features"):
        JudgeHead.from_json(raw)


def test_shipped_head_loads_and_ranks_a_paraphrase_above_a_near_miss(models_dir: Path) -> None:
    head = JudgeHead.load()
    assert head.meta["data"].startswith("qqp train")
    assert 0.0 < head.threshold <= 1.0
    with OnnxEmbedder(models_dir / "minilm-l6-v2-onnx") as emb:
        cached = "How do I reverse a list in Python?"
        asked = ["how can I reverse a python list", "How do I sort a list in Python?"]
        v = emb.embed([cached, *asked])
        p = head.probabilities(v[[0, 0]], v[1:], [cached] * 2, asked)
    assert p[0] > p[1]


def test_pair_vectors_are_cached_by_the_texts(tmp_path: Path, models_dir: Path) -> None:
    pairs = [Pair("How do I boil an egg?", "how to boil eggs", 1), Pair("What is Rust?", "What is Go?", 0)]
    with OnnxEmbedder(models_dir / "minilm-l6-v2-onnx") as emb:
        va, vb = pair_vectors(emb, pairs, tmp_path)
        assert len(list(tmp_path.glob("emb-*.npy"))) == 1
        again = pair_cosines(emb, pairs, tmp_path)
    assert np.allclose(again, np.einsum("ij,ij->i", va, vb))
    assert again[0] > again[1]
