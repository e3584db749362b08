from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.routing.estimators import AutoLogistic, CascadeEstimator, KnnSuccess, hash_folds, out_of_fold
from shared.routing.linear import LinearHead, train_sigmoid_head, train_softmax_head


def _unit(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def _clusters(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(3, 16)))
    y = rng.integers(0, 3, n)
    return _unit(centres[y] + 0.3 * rng.normal(size=(n, 16))), y


def test_softmax_head_learns_and_roundtrips(tmp_path: Path) -> None:
    xa, ya = _clusters(900)
    x, y, xt, yt = xa[:600], ya[:600], xa[600:], ya[600:]
    head = train_softmax_head(x, y, ("a", "b", "c"), version=1)
    assert (head.proba(xt.astype(np.float32)).argmax(1) == yt).mean() > 0.95
    head.save(tmp_path / "h.npz")
    back = LinearHead.load(tmp_path / "h.npz")
    assert back.labels == head.labels and back.meta == {"version": 1}
    np.testing.assert_array_equal(back.proba(xt.astype(np.float32)), head.proba(xt.astype(np.float32)))


def test_training_is_deterministic() -> None:
    x, y = _clusters(300)
    a = train_sigmoid_head(x, (y == 1).astype(float)[:, None], ("y",))
    b = train_sigmoid_head(x, (y == 1).astype(float)[:, None], ("y",))
    np.testing.assert_array_equal(a.weights, b.weights)


def test_sigmoid_head_skips_unknown_outcomes() -> None:
    x, y = _clusters(400)
    targets = np.stack([(y == 0).astype(float), np.where(y == 2, np.nan, (y == 1).astype(float))], 1)
    head = train_sigmoid_head(x, targets, ("m0", "m1"))
    p = head.proba(x.astype(np.float32))
    assert p[y == 0, 0].mean() > 0.8 and p[y == 1, 1].mean() > 0.8


def test_estimators_rank_success_out_of_fold() -> None:
    x, y = _clusters(900)
    scores = np.stack([(y == 0).astype(float), np.ones(len(y))], 1)
    folds = hash_folds([f"row {i}" for i in range(len(y))], 5)
    for factory in (AutoLogistic, KnnSuccess):
        p = out_of_fold(factory, x.astype(np.float32), scores, folds)
        assert p[y == 0, 0].mean() > p[y != 0, 0].mean() + 0.5


def test_cascade_reads_answer_features_for_the_drafting_model() -> None:
    x, _ = _clusters(600)
    rng = np.random.default_rng(3)
    flag = rng.integers(0, 2, len(x)).astype(float)  # only the answer reveals success
    scores = np.stack([flag, np.ones(len(x))], 1)
    xa = np.hstack([x, 3 * flag[:, None]]).astype(np.float32)
    est = CascadeEstimator(x.shape[1], [0], AutoLogistic)
    est.fit(xa, scores)
    p = est.predict(xa)
    assert p[flag == 1, 0].mean() > 0.9 > 0.1 > p[flag == 0, 0].mean()
    again = est.frozen()()
    again.fit(xa, scores)
    np.testing.assert_allclose(again.predict(xa), p)


def test_corrupt_head_is_refused(tmp_path: Path) -> None:
    x, y = _clusters(60)
    head = train_softmax_head(x, y, ("a", "b", "c"))
    with pytest.raises(ValueError):
        LinearHead("softmax", ("a", "b"), head.weights, head.bias, {})
