from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_agent.cache.projection import FitConfig, Projection, fit_projection, start_matrix
from edge_agent.cache.projection_fit import calibration_part, verifier_scores
from edge_agent.cache.verifier import Verifier
from shared.paraphrase import Pair


def toy_pairs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs that share a loud topic (dims 0-11) and differ, for negatives, only in a quiet intent
    (dims 12-15): the raw cosine barely tells them apart, a reweighting of the dims does."""
    rng = np.random.default_rng(seed)
    topic = rng.standard_normal((n, 12))
    intent_a = rng.standard_normal((n, 4))
    labels = (rng.random(n) < 0.5).astype(np.int64)
    intent_b = np.where(labels[:, None] == 1, intent_a, rng.standard_normal((n, 4)))
    a = np.hstack([topic + 0.6 * rng.standard_normal((n, 12)), 0.25 * intent_a])
    b = np.hstack([topic + 0.6 * rng.standard_normal((n, 12)), 0.25 * intent_b])
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return a.astype(np.float32), b.astype(np.float32), labels


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    return float((pos[:, None] > neg[None, :]).mean())


def test_fitted_projection_separates_what_the_raw_cosine_cannot() -> None:
    a, b, y = toy_pairs(600, seed=1)
    ta, tb, ty = toy_pairs(400, seed=2)  # held out
    raw = auc(np.einsum("ij,ij->i", ta, tb), ty)
    cfg = FitConfig(dim=16, epochs=40, batch=64, lr=1e-2, l2=1e-4, nce_weight=0.2)
    proj = fit_projection(a, b, y, cfg)
    got = auc(proj.cosines(ta, tb), ty)
    assert raw < 0.75
    assert got > 0.9 and got > raw + 0.15
    assert proj.meta["epoch_loss"][-1] < proj.meta["epoch_loss"][0]


def test_a_smaller_projection_starts_from_principal_directions() -> None:
    a, b, y = toy_pairs(300, seed=3)
    w = start_matrix(np.concatenate([a, b]), 6)
    assert w.shape == (16, 6)
    assert np.allclose(w.T @ w, np.eye(6), atol=1e-8)
    proj = fit_projection(a, b, y, FitConfig(dim=6, epochs=2, batch=64))
    assert proj.project(a).shape == (300, 6)
    assert np.allclose(np.linalg.norm(proj.project(a), axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError):
        start_matrix(a, 32)


def test_weights_round_trip_with_their_digest(tmp_path: Path) -> None:
    a, b, y = toy_pairs(200, seed=4)
    proj = fit_projection(a, b, y, FitConfig(dim=16, epochs=1, batch=64))
    path = tmp_path / "p.npz"
    proj.save(path)
    back = Projection.load(path)
    assert back.identity == proj.identity
    assert back.meta["pairs"] == 200
    assert np.array_equal(back.project(a[:3]), proj.project(a[:3]))
    assert abs(back.cosine(a[0], b[0]) - float(proj.cosines(a[:1], b[:1])[0])) < 1e-6
    moved = Projection(proj.matrix * np.float32(1.0001))
    assert moved.identity != proj.identity
    np.savez(tmp_path / "bad.npz", matrix=np.zeros(16, dtype=np.float32))
    with pytest.raises(ValueError):
        Projection.load(tmp_path / "bad.npz")


def test_scores_keep_the_raw_floor_and_the_guards() -> None:
    pairs = [
        Pair("How do I boil an egg?", "How should I boil an egg?", 1),
        Pair("How do I boil an egg?", "How should I boil an egg?", 1),
        Pair("What is 2+2?", "What is 2+3?", 0),
    ]
    raw = np.array([0.95, 0.70, 0.97])  # the second is under the floor whatever its projection says
    got = verifier_scores(Verifier.load(), pairs, raw, np.array([0.99, 0.99, 0.99]))
    assert np.isfinite(got[0]) and 0.0 < got[0] <= 1.0
    assert got[1] == -np.inf and got[2] == -np.inf  # floor, then the number guard's veto
    # the calibration quarter is a fixed function of the text, about one pair in four
    sample = [Pair(f"q{i}", f"r{i}", 0) for i in range(2000)]
    share = sum(calibration_part(p) for p in sample) / len(sample)
    assert 0.2 < share < 0.3 and calibration_part(sample[0]) == calibration_part(Pair("q0", "r0", 1))
