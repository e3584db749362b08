"""Per-model success estimators trained on recorded outcomes, and honest out-of-fold predictions.

``fit(x, scores)`` learns from embeddings ``x`` (n, d) and outcomes ``scores`` (n, models, NaN =
unknown); ``predict(x)`` returns (n, models) probabilities of success. The blend of a logistic head
(smooth, global) and kNN (local, catches clusters the linear head averages away) is the default
router; plain kNN is kept as the simple baseline it is compared against.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from shared.routing.linear import LinearHead, train_sigmoid_head

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]


class KnnEstimator:
    """ "How did each model do on the most similar recorded prompts?"

    Probabilities shrink towards each model's overall rate with ``prior_weight`` pseudo-neighbours,
    so a prompt far from everything recorded falls back to the average, not to a noisy handful.
    """

    def __init__(
        self,
        embeddings: F32,
        scores: F64,
        k: int = 32,
        temperature: float = 0.05,
        prior_weight: float = 2.0,
        block: int = 2048,
    ) -> None:
        if embeddings.shape[0] != scores.shape[0]:
            raise ValueError("one score row per embedding")
        if embeddings.shape[0] == 0:
            raise ValueError("kNN needs at least one recorded prompt")
        self._x = np.ascontiguousarray(embeddings, dtype=np.float32)
        self._known = ~np.isnan(scores)
        self._s = np.where(self._known, scores, 0.0)
        self._prior = np.nanmean(scores, axis=0)
        self._prior = np.where(np.isnan(self._prior), 0.5, self._prior)
        self.k = min(k, embeddings.shape[0])
        self.temperature = temperature
        self.prior_weight = prior_weight
        self._block = block

    def predict(self, queries: F32) -> F64:
        """(queries, models) success probabilities; queries must be L2-normalised like the index."""
        q = np.atleast_2d(queries).astype(np.float32)
        out = np.empty((q.shape[0], self._s.shape[1]))
        for start in range(0, q.shape[0], self._block):
            out[start : start + self._block] = self._predict_block(q[start : start + self._block])
        return out

    def _predict_block(self, q: F32) -> F64:
        sims = q @ self._x.T
        idx = np.argpartition(-sims, self.k - 1, axis=1)[:, : self.k]
        top = np.take_along_axis(sims, idx, axis=1).astype(np.float64)
        # softmax-style weights relative to the best match keep exp() in range
        w = np.exp((top - top.max(axis=1, keepdims=True)) / self.temperature)
        known = self._known[idx]  # (q, k, m)
        ws = w[:, :, None] * known
        num = (ws * self._s[idx]).sum(axis=1) + self.prior_weight * self._prior
        den = ws.sum(axis=1) + self.prior_weight
        result: F64 = num / den
        return result


class SuccessEstimator(Protocol):
    def fit(self, x: F32, scores: F64) -> None: ...

    def predict(self, x: F32) -> F64: ...


@runtime_checkable
class Tunable(Protocol):
    """An estimator that tunes itself in ``fit``; ``frozen()`` makes fresh ones with those settings."""

    def frozen(self) -> Callable[[], SuccessEstimator]: ...


class LogisticEstimator:
    def __init__(self, l2: float = 1.0) -> None:
        self.l2 = l2
        self._head: LinearHead | None = None

    def fit(self, x: F32, scores: F64) -> None:
        labels = tuple(str(i) for i in range(scores.shape[1]))
        self._head = train_sigmoid_head(x.astype(np.float64), scores, labels, l2=self.l2)

    def predict(self, x: F32) -> F64:
        if self._head is None:
            raise RuntimeError("fit() first")
        return self._head.proba(x).astype(np.float64)

    @property
    def head(self) -> LinearHead:
        if self._head is None:
            raise RuntimeError("fit() first")
        return self._head


class KnnSuccess:
    def __init__(self, k: int = 32, temperature: float = 0.05, prior_weight: float = 2.0) -> None:
        self.k, self.temperature, self.prior_weight = k, temperature, prior_weight
        self._knn: KnnEstimator | None = None

    def fit(self, x: F32, scores: F64) -> None:
        self._knn = KnnEstimator(x, scores, self.k, self.temperature, self.prior_weight)

    def predict(self, x: F32) -> F64:
        if self._knn is None:
            raise RuntimeError("fit() first")
        return self._knn.predict(x)


class BlendEstimator:
    """Weighted mean of member predictions."""

    def __init__(self, members: Sequence[SuccessEstimator], weights: Sequence[float]) -> None:
        if len(members) != len(weights) or not members:
            raise ValueError("one weight per member")
        self._members = list(members)
        total = float(sum(weights))
        self._weights = [w / total for w in weights]

    def fit(self, x: F32, scores: F64) -> None:
        for m in self._members:
            m.fit(x, scores)

    def predict(self, x: F32) -> F64:
        out: F64 = sum(w * m.predict(x) for w, m in zip(self._weights, self._members, strict=True))  # type: ignore[assignment]
        return out


class AutoLogistic:
    """Logistic heads whose L2 strength is picked per model by inner cross-validated log-loss."""

    def __init__(
        self, grid: Sequence[float] = (1.0, 3.0, 10.0, 30.0), folds: int = 3, fixed: Sequence[float] = ()
    ) -> None:
        self.grid, self.folds, self.fixed = tuple(grid), folds, tuple(fixed)
        self._heads: list[LinearHead] = []
        self.chosen: list[float] = []

    def fit(self, x: F32, scores: F64) -> None:
        xd = x.astype(np.float64)
        fold = np.arange(len(x)) % self.folds  # interleaved: every fold spans the whole file order
        self._heads, self.chosen = [], []
        for j in range(scores.shape[1]):
            y = scores[:, [j]]
            if self.fixed:
                best = self.fixed[j]
            else:
                best = min(self.grid, key=lambda l2: _cv_logloss(xd, y, fold, l2))
            self.chosen.append(best)
            self._heads.append(train_sigmoid_head(xd, y, (str(j),), l2=best))

    def predict(self, x: F32) -> F64:
        if not self._heads:
            raise RuntimeError("fit() first")
        return np.hstack([h.proba(x) for h in self._heads]).astype(np.float64)

    @property
    def heads(self) -> list[LinearHead]:
        """One single-label sigmoid head per model column, in column order."""
        return list(self._heads)

    def frozen(self) -> Callable[[], SuccessEstimator]:
        chosen = tuple(self.chosen)
        return lambda: AutoLogistic(self.grid, self.folds, fixed=chosen)


def _cv_logloss(x: F64, y: F64, fold: NDArray[np.int_], l2: float) -> float:
    total, n = 0.0, 0
    for f in np.unique(fold):
        tr, te = (fold != f) & ~np.isnan(y[:, 0]), (fold == f) & ~np.isnan(y[:, 0])
        if not te.any() or not tr.any():
            continue
        p = np.clip(
            train_sigmoid_head(x[tr], y[tr], ("y",), l2=l2).proba(x[te].astype(np.float32))[:, 0],
            1e-6,
            1 - 1e-6,
        )
        t = y[te, 0]
        total -= float(np.sum(t * np.log(p) + (1 - t) * np.log(1 - p)))
        n += int(te.sum())
    return total / max(n, 1)


class CascadeEstimator:
    """Success of models whose drafted answer is known (``cascade`` columns) reads the answer features too.

    ``x`` rows are ``[prompt embedding (dim) | answer features]``; other models see the prompt only.
    """

    def __init__(self, dim: int, cascade: Sequence[int], factory: Callable[[], SuccessEstimator]) -> None:
        self.dim, self.cascade = dim, tuple(cascade)
        self._factory = factory
        self._answer_factory = factory
        self._prompt: SuccessEstimator | None = None
        self._answer: SuccessEstimator | None = None

    def fit(self, x: F32, scores: F64) -> None:
        self._prompt, self._answer = self._factory(), self._answer_factory()
        self._prompt.fit(x[:, : self.dim], scores)
        self._answer.fit(x, scores[:, list(self.cascade)])

    def predict(self, x: F32) -> F64:
        if self._prompt is None or self._answer is None:
            raise RuntimeError("fit() first")
        out = self._prompt.predict(x[:, : self.dim])
        out[:, list(self.cascade)] = self._answer.predict(x)
        return out

    def frozen(self) -> Callable[[], SuccessEstimator]:
        if self._prompt is None or self._answer is None:
            raise RuntimeError("fit() first")
        parts = [
            m.frozen() if isinstance(m, Tunable) else self._factory for m in (self._prompt, self._answer)
        ]
        dim, cascade = self.dim, self.cascade

        def make() -> SuccessEstimator:
            est = CascadeEstimator(dim, cascade, parts[0])
            est._answer_factory = parts[1]
            return est

        return make


def default_estimator() -> SuccessEstimator:
    return AutoLogistic()


def hash_unit(text: str, salt: str = "edgeroute-routing") -> float:
    """A stable pseudo-random number in [0, 1) per text: splits never depend on file order or seeds."""
    return int(hashlib.sha256(f"{salt}\0{text}".encode()).hexdigest()[:12], 16) / float(1 << 48)


def hash_folds(prompts: Sequence[str], k: int, salt: str = "edgeroute-folds") -> NDArray[np.intp]:
    return np.array([min(k - 1, int(hash_unit(p, salt) * k)) for p in prompts], dtype=np.intp)


def out_of_fold(factory: Callable[[], SuccessEstimator], x: F32, scores: F64, folds: NDArray[np.intp]) -> F64:
    """Predictions for every row from a model that never saw that row."""
    out = np.empty(scores.shape)
    for f in np.unique(folds):
        held = folds == f
        est = factory()
        est.fit(x[~held], scores[~held])
        out[held] = est.predict(x[held])
    return out
