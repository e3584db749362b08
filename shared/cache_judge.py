"""Pair head for judging semantic-cache reuse: logistic regression on sentence-vector pair features.

The edge's verifier weighs a dozen hand-made features; this head reads the whole pair of MiniLM
vectors as a siamese classifier does (``|a - b|`` and ``a * b``, one weight per dimension) plus a
few lexical agreements, so it can learn which directions of the embedding space separate "the same
question" from "the same topic". It runs as the hub's judge of grey-zone candidates, and lives in
``shared`` so the edge's benchmark can measure edge + judge on the same pairs without importing the
hub. Weights are plain JSON (folded to one coefficient per feature), fitted deterministically on the
QQP train split only; the threshold is chosen on a calibration slice the weights never saw.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shared.routing.linear import fit_binary, sigmoid

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

FEATURE_SET = "minilm-pair-v1"  # |a-b| and a*b of the unit vectors, cosine, LEXICAL
LEXICAL = ("word_jaccard", "char3", "len_ratio", "numbers_match")
WEIGHTS_RESOURCE = "cache_judge.json"

_WORD = re.compile(r"[a-z0-9]+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def lexical_features(a: str, b: str) -> list[float]:
    wa, wb = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
    ga = {a.lower()[i : i + 3] for i in range(max(len(a) - 2, 0))}
    gb = {b.lower()[i : i + 3] for i in range(max(len(b) - 2, 0))}
    la, lb = max(len(a.split()), 1), max(len(b.split()), 1)
    return [
        len(wa & wb) / max(len(wa | wb), 1),
        len(ga & gb) / max(len(ga | gb), 1),
        min(la, lb) / max(la, lb),
        float(sorted(_NUMBER.findall(a)) == sorted(_NUMBER.findall(b))),
    ]


def pair_features(va: F32, vb: F32, texts_a: Sequence[str], texts_b: Sequence[str]) -> F64:
    """One row per pair: ``|a-b|``, ``a*b``, cosine, then ``LEXICAL``; rows of ``va``/``vb`` unit length."""
    a, b = np.atleast_2d(va).astype(np.float64), np.atleast_2d(vb).astype(np.float64)
    if a.shape != b.shape or len(a) != len(texts_a) or len(texts_a) != len(texts_b):
        raise ValueError("pair features need as many vectors as texts on both sides")
    lex = np.asarray([lexical_features(x, y) for x, y in zip(texts_a, texts_b, strict=True)])
    cos = np.einsum("ij,ij->i", a, b)[:, None]
    return np.hstack([np.abs(a - b), a * b, cos, lex.reshape(len(a), len(LEXICAL))])


@dataclass
class JudgeHead:
    """``probability = sigmoid(features @ coef + bias)``; ``threshold`` approves, per domain if set."""

    coef: list[float]
    bias: float
    threshold: float
    dim: int
    thresholds: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def probabilities(self, va: F32, vb: F32, texts_a: Sequence[str], texts_b: Sequence[str]) -> F64:
        x = pair_features(va, vb, texts_a, texts_b)
        if x.shape[1] != len(self.coef):
            raise ValueError(f"the head was fitted on {self.dim}-d vectors, got {va.shape[-1]}-d")
        return sigmoid(x @ np.asarray(self.coef) + self.bias)

    def threshold_for(self, domain: str) -> float:
        return self.thresholds.get(domain, self.threshold)

    @cached_property
    def identity(self) -> str:
        """A digest of the weights: a threshold reviewed for one fit does not carry to another."""
        return hashlib.sha256(json.dumps([self.coef, self.bias]).encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps(
            {
                "features": FEATURE_SET,
                "dim": self.dim,
                "coef": [float(f"{c:.7g}") for c in self.coef],
                "bias": self.bias,
                "threshold": self.threshold,
                "thresholds": self.thresholds,
                "meta": self.meta,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> JudgeHead:
        raw = json.loads(text)
        if raw.get("features") != FEATURE_SET:
            raise ValueError(f"judge weights use features {raw.get('features')!r}, not {FEATURE_SET!r}")
        dim = int(raw["dim"])
        coef = [float(c) for c in raw["coef"]]
        if len(coef) != 2 * dim + 1 + len(LEXICAL):
            raise ValueError("judge weights do not match their feature set")
        return cls(
            coef=coef,
            bias=float(raw["bias"]),
            threshold=float(raw["threshold"]),
            dim=dim,
            thresholds={str(k): float(v) for k, v in raw.get("thresholds", {}).items()},
            meta=dict(raw.get("meta", {})),
        )

    @classmethod
    def load(cls, path: Path | None = None) -> JudgeHead:
        """``path``, else the weights shipped with the package."""
        if path is not None:
            return cls.from_json(path.read_text())
        return cls.from_json(resources.files("shared").joinpath(WEIGHTS_RESOURCE).read_text())


def fit_head(x: F64, y: F64, *, dim: int, l2: float = 10.0, meta: dict[str, Any] | None = None) -> JudgeHead:
    """Standardise, fit by Newton's method, then fold the scaling into the weights.

    The threshold starts at 1.0 (approve nothing): it is chosen on pairs the fit did not see.
    """
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    w, b = fit_binary((x - mean) / scale, y, l2=l2)
    coef = w / scale
    bias = b - float(mean @ coef)
    return JudgeHead(
        coef=[float(c) for c in coef], bias=bias, threshold=1.0, dim=dim,
        meta={**(meta or {}), "train_rows": len(y), "train_positive": int(y.sum()), "l2": l2},
    )  # fmt: skip
