"""Nearest-neighbour success estimates: "how did each model do on the most similar recorded prompts?"

Probabilities are shrunk towards each model's overall rate with ``prior_weight`` pseudo-neighbours,
so a prompt far from everything recorded falls back to the average instead of to a noisy handful.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]


class KnnEstimator:
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
