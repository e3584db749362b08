"""A paraphrase projection of the MiniLM vectors: one linear map, applied after the embedding.

MiniLM places "the same question" and "the same topic" close together, so its cosine alone ranks
Quora's hard non-duplicates among the paraphrases. A linear map ``W`` fitted on labelled pairs can
stretch the directions along which duplicates and near-misses differ and shrink the rest, while the
routing heads and the vector index keep reading the unprojected vector: the projection is one
``(1, 384) @ (384, d)`` product on a vector the request has already paid for.

The map is fitted in plain numpy (no torch on the edge) with Adam on two terms:

* a pair term: binary cross-entropy of ``sigmoid(scale * (cos(Wa, Wb) - margin))`` against the
  pair's label, which is what pulls labelled near-misses apart from paraphrases;
* an in-batch InfoNCE term over the positive pairs (each ``a`` against every ``b`` of the batch),
  which keeps unrelated questions far apart so the map cannot win the pair term by collapsing;

plus an L2 pull of ``W`` towards its start (the identity, or the leading principal directions when
``d`` < 384), so it moves only as far as the labels pay for. Weights are saved as ``.npz`` (no
pickle) and named by a digest of their bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class FitConfig:
    dim: int = 384
    epochs: int = 4
    batch: int = 512
    lr: float = 2e-3
    pair_weight: float = 1.0
    nce_weight: float = 0.5
    nce_temperature: float = 0.05
    l2: float = 1e-3  # pull towards the starting map, per batch
    seed: int = 0


@dataclass
class Projection:
    """``project(v) = normalise(v @ matrix)``; ``matrix`` is ``(input_dim, dim)``."""

    matrix: F32
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def input_dim(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def project(self, vectors: F32) -> F32:
        """Unit rows of ``vectors @ matrix``; a 1-d vector gives a 1-d vector."""
        u = np.asarray(vectors, dtype=np.float32) @ self.matrix
        norm = np.linalg.norm(u, axis=-1, keepdims=True)
        out: F32 = (u / np.maximum(norm, 1e-12)).astype(np.float32)
        return out

    def cosines(self, va: F32, vb: F32) -> F32:
        """Row-wise cosine of the projected pairs."""
        out: F32 = np.einsum("ij,ij->i", self.project(va), self.project(vb)).astype(np.float32)
        return out

    def cosine(self, a: F32, b: F32) -> float:
        return float(self.project(a) @ self.project(b))

    @cached_property
    def identity(self) -> str:
        """A digest of the weights: anything fitted on projected cosines belongs to these weights."""
        m = np.ascontiguousarray(self.matrix, dtype=np.float32)
        return hashlib.sha256(m.tobytes() + str(m.shape).encode()).hexdigest()[:16]

    def save(self, path: Path) -> None:
        with path.open("wb") as fh:
            np.savez_compressed(
                fh, matrix=self.matrix.astype(np.float32), meta=np.array(json.dumps(self.meta))
            )

    @classmethod
    def load(cls, path: Path) -> Projection:
        with np.load(path, allow_pickle=False) as data:
            matrix = np.asarray(data["matrix"], dtype=np.float32)
            meta = json.loads(str(data["meta"])) if "meta" in data else {}
        if matrix.ndim != 2:
            raise ValueError(f"{path}: a projection is a 2-d matrix, got shape {matrix.shape}")
        return cls(matrix, meta)


def start_matrix(x: F32, dim: int) -> F64:
    """The identity when ``dim`` is the input's; else the top ``dim`` principal directions of ``x``
    (uncentred, so cosines of the start map approximate the original ones)."""
    d_in = x.shape[1]
    if dim == d_in:
        return np.eye(d_in)
    if dim > d_in:
        raise ValueError(f"a projection to {dim} dimensions from {d_in} would only add noise")
    _, _, vt = np.linalg.svd(np.asarray(x, dtype=np.float64), full_matrices=False)
    start: F64 = vt[:dim].T
    return start


def _normalise(u: F64) -> tuple[F64, F64]:
    norm = np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
    return u / norm, norm


def _back_normalise(z: F64, norm: F64, grad_z: F64) -> F64:
    """Gradient through ``z = u / |u|``."""
    grad_u: F64 = (grad_z - z * np.einsum("ij,ij->i", z, grad_z)[:, None]) / norm
    return grad_u


def batch_loss(w: F64, scale_margin: F64, xa: F64, xb: F64, y: F64, cfg: FitConfig) -> tuple[float, F64, F64]:
    """(loss, d loss / d w, d loss / d [log scale, margin]) of one batch."""
    za, na = _normalise(xa @ w)
    zb, nb = _normalise(xb @ w)
    cos = np.einsum("ij,ij->i", za, zb)
    log_scale, margin = float(scale_margin[0]), float(scale_margin[1])
    scale = float(np.exp(log_scale))
    logit = scale * (cos - margin)
    p = 1.0 / (1.0 + np.exp(-logit))
    eps = 1e-9
    n = len(y)
    pair_loss = float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
    d_logit = (p - y) / n * cfg.pair_weight
    d_cos = d_logit * scale
    grad_sm = np.array([float(np.sum(d_logit * (cos - margin))) * scale, -float(np.sum(d_logit)) * scale])
    gza = d_cos[:, None] * zb
    gzb = d_cos[:, None] * za
    loss = cfg.pair_weight * pair_loss
    pos = np.flatnonzero(y > 0.5)
    if cfg.nce_weight > 0 and len(pos) > 1:
        a, b = za[pos], zb[pos]
        logits = (a @ b.T) / cfg.nce_temperature
        logits -= logits.max(axis=1, keepdims=True)
        soft = np.exp(logits)
        soft /= soft.sum(axis=1, keepdims=True)
        m = len(pos)
        loss += cfg.nce_weight * float(-np.mean(np.log(np.diag(soft) + eps)))
        d_logits = (soft - np.eye(m)) / m * cfg.nce_weight / cfg.nce_temperature
        gza[pos] += d_logits @ b
        gzb[pos] += d_logits.T @ a
    gw = xa.T @ _back_normalise(za, na, gza) + xb.T @ _back_normalise(zb, nb, gzb)
    return loss, gw, grad_sm


def fit_projection(va: F32, vb: F32, labels: I64, cfg: FitConfig | None = None) -> Projection:
    """Fit ``W`` on pairs (rows of ``va``/``vb``, label 1 = the same question)."""
    cfg = cfg or FitConfig()
    if not (len(va) == len(vb) == len(labels)) or len(va) == 0:
        raise ValueError("a projection needs as many labels as pairs, and at least one pair")
    rng = np.random.default_rng(cfg.seed)
    xa, xb = np.asarray(va, dtype=np.float64), np.asarray(vb, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    w0 = start_matrix(np.concatenate([va, vb]), cfg.dim)
    w = w0.copy()
    cos0 = np.einsum("ij,ij->i", _normalise(xa @ w)[0], _normalise(xb @ w)[0])
    # start the pair term where it already ranks sensibly: the margin at the mean cosine
    sm = np.array([np.log(20.0), float(cos0.mean())])
    params = [w, sm]
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    b1, b2, step = 0.9, 0.999, 0
    losses: list[float] = []
    for _ in range(cfg.epochs):
        order = rng.permutation(len(y))
        epoch: list[float] = []
        for start in range(0, len(order), cfg.batch):
            idx = order[start : start + cfg.batch]
            loss, gw, gsm = batch_loss(w, sm, xa[idx], xb[idx], y[idx], cfg)
            gw = gw + cfg.l2 * (w - w0)
            loss += 0.5 * cfg.l2 * float(np.sum((w - w0) ** 2))
            step += 1
            for p, g, a, b in zip(params, (gw, gsm), m1, m2, strict=True):
                a *= b1
                a += (1 - b1) * g
                b *= b2
                b += (1 - b2) * g * g
                p -= cfg.lr * (a / (1 - b1**step)) / (np.sqrt(b / (1 - b2**step)) + 1e-8)
            epoch.append(loss)
        losses.append(float(np.mean(epoch)))
    meta: dict[str, Any] = {
        "config": cfg.__dict__,
        "pairs": len(y),
        "positives": int(y.sum()),
        "epoch_loss": [round(v, 5) for v in losses],
        "scale": round(float(np.exp(sm[0])), 4),
        "margin": round(float(sm[1]), 4),
    }
    return Projection(w.astype(np.float32), meta)
