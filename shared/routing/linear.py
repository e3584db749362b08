"""Linear heads on sentence embeddings: training (numpy only, deterministic) and inference.

Two kinds share one artifact format (``.npz`` read with ``allow_pickle=False``):

* ``softmax`` — one label out of many (task type, domain);
* ``sigmoid`` — independent probabilities, one per label (per-model / per-tier success).

Training is full-batch Newton (binary) or gradient descent (softmax) from zero weights, so the same
data always gives the same weights bit for bit on the same numpy build.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

Kind = Literal["softmax", "sigmoid"]
F32 = NDArray[np.float32]
F64 = NDArray[np.float64]


def sigmoid(z: F64) -> F64:
    out: F64 = 0.5 * (1.0 + np.tanh(0.5 * z))  # tanh form never overflows
    return out


def fit_binary(
    x: F64, y: F64, l2: float = 1.0, weight: F64 | None = None, iters: int = 25
) -> tuple[F64, float]:
    """L2-regularised logistic regression by Newton-Raphson; ``y`` may be fractional (soft labels)."""
    n, d = x.shape
    sw = np.ones(n) if weight is None else weight
    xb = np.hstack([x, np.ones((n, 1))])
    theta = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 1e-6  # the intercept is not shrunk
    for _ in range(iters):
        p = sigmoid(xb @ theta)
        grad = xb.T @ (sw * (p - y)) + reg * theta
        hess = (xb * (sw * p * (1 - p))[:, None]).T @ xb + np.diag(reg)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if float(np.max(np.abs(step))) < 1e-7:
            break
    return theta[:-1], float(theta[-1])


def fit_softmax(x: F64, y: NDArray[np.intp], k: int, l2: float = 1e-3, iters: int = 400) -> tuple[F64, F64]:
    """Multinomial logistic regression by Nesterov-accelerated gradient descent."""
    n, d = x.shape
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y] = 1.0
    w, b = np.zeros((d, k)), np.zeros(k)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    # 1/L for the softmax loss on unit-norm inputs is at most 2: a step of 1.0 is safe and quick
    lr, mom = 1.0, 0.9
    for _ in range(iters):
        lw, lb = w + mom * vw, b + mom * vb
        z = x @ lw + lb
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        gw = x.T @ (p - onehot) / n + l2 * lw
        gb = (p - onehot).mean(axis=0)
        vw = mom * vw - lr * gw
        vb = mom * vb - lr * gb
        w, b = w + vw, b + vb
    return w, b


@dataclass(frozen=True)
class LinearHead:
    """``proba(x) = softmax|sigmoid(x @ weights + bias)``; labels name the output columns."""

    kind: Kind
    labels: tuple[str, ...]
    weights: F32  # (dim, labels)
    bias: F32  # (labels,)
    meta: dict[str, str | float | int]

    def __post_init__(self) -> None:
        if self.weights.shape != (self.weights.shape[0], len(self.labels)) or self.bias.shape != (
            len(self.labels),
        ):
            raise ValueError("head weights do not match its labels")

    @property
    def dim(self) -> int:
        return int(self.weights.shape[0])

    def proba(self, x: F32) -> F32:
        """Rows of ``x`` are embeddings; returns (rows, labels)."""
        z = np.atleast_2d(x).astype(np.float32) @ self.weights + self.bias
        if self.kind == "sigmoid":
            out: F32 = sigmoid(z.astype(np.float64)).astype(np.float32)
            return out
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        result: F32 = e / e.sum(axis=1, keepdims=True)
        return result

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            np.savez_compressed(
                fh,
                kind=np.array(self.kind),
                labels=np.array(self.labels, dtype=np.str_),
                weights=self.weights.astype(np.float32),
                bias=self.bias.astype(np.float32),
                meta=np.array(json.dumps(self.meta, sort_keys=True)),
            )

    @classmethod
    def load(cls, path: Path) -> LinearHead:
        with np.load(path, allow_pickle=False) as z:
            kind = str(z["kind"])
            if kind not in ("softmax", "sigmoid"):
                raise ValueError(f"{path}: unknown head kind {kind!r}")
            return cls(
                kind="softmax" if kind == "softmax" else "sigmoid",
                labels=tuple(str(s) for s in z["labels"]),
                weights=z["weights"].astype(np.float32),
                bias=z["bias"].astype(np.float32),
                meta=json.loads(str(z["meta"])),
            )


def train_sigmoid_head(
    x: F64, targets: F64, labels: tuple[str, ...], l2: float = 1.0, **meta: str | float | int
) -> LinearHead:
    """One binary head per column of ``targets`` (NaN rows are skipped for that column)."""
    ws, bs = [], []
    for j in range(targets.shape[1]):
        ok = ~np.isnan(targets[:, j])
        w, b = fit_binary(x[ok], targets[ok, j], l2=l2)
        ws.append(w)
        bs.append(b)
    return LinearHead(
        "sigmoid", labels, np.stack(ws, axis=1).astype(np.float32), np.array(bs, dtype=np.float32), dict(meta)
    )


def train_softmax_head(
    x: F64, y: NDArray[np.intp], labels: tuple[str, ...], l2: float = 1e-3, **meta: str | float | int
) -> LinearHead:
    w, b = fit_softmax(x, y, len(labels), l2=l2)
    return LinearHead("softmax", labels, w.astype(np.float32), b.astype(np.float32), dict(meta))
