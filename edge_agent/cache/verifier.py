"""Learned verifier for semantic-cache candidates: logistic regression over pair features.

A cosine threshold alone cannot separate paraphrases from near-misses (on Quora pairs, 0.97 still
lets through about 9% wrong hits), so a candidate that survives the hard guards must also score
above a per-domain probability threshold. Weights are plain JSON, fitted deterministically by
Newton's method on a training split only; thresholds start from the training data and an audit of
served hits can only raise them (``refine``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.cache.guards import check_pair
from shared.cache_text import question_form
from shared.config import CacheSettings
from shared.paraphrase import operating_point

# Each feature with the sign its weight must have. Quora's non-duplicates were sampled for high word
# overlap, so an unconstrained fit learns "more shared words → less likely the same question";
# that artefact would make a cache reject identical questions, so such weights are held at zero.
SIGNS: dict[str, int] = {
    "cosine": 1,
    "jaccard": 1,
    "content_jaccard": 1,
    "content_only_a": -1,
    "content_only_b": -1,
    "char3": 1,
    "len_ratio": 1,
    "wh_diff": -1,
    "entity_missing": -1,
    "entities_shared": 1,
    "number_one_sided": -1,
    "order": 1,
}
FEATURES = tuple(SIGNS)
WEIGHTS_RESOURCE = "verifier.json"

Matrix = npt.NDArray[np.float64]


def feature_vector(cosine: float, lexical: dict[str, float]) -> list[float]:
    values = {"cosine": cosine, **lexical}
    return [float(values[name]) for name in FEATURES]


@dataclass
class Verifier:
    coef: list[float]
    bias: float
    mean: list[float]
    scale: list[float]
    default_threshold: float
    thresholds: dict[str, float] = field(default_factory=dict)
    min_cosine: float = 0.8
    meta: dict[str, Any] = field(default_factory=dict)

    def threshold(self, domain: str) -> float:
        return self.thresholds.get(domain, self.default_threshold)

    def raise_threshold(self, at_least: float) -> None:
        """A stricter operating point for every domain; never lowers a threshold an audit raised."""
        self.default_threshold = max(self.default_threshold, at_least)
        self.thresholds = {d: max(t, at_least) for d, t in self.thresholds.items()}

    def probability(self, cosine: float, a: str, b: str) -> tuple[float, str]:
        """(probability that ``b`` may reuse ``a``'s answer, veto reason or "")."""
        if question_form(a) == question_form(b):
            return 1.0, ""  # the same question up to case and punctuation: nothing to verify
        check = check_pair(a, b)
        if check.veto:
            return 0.0, check.veto
        return self.probability_of(feature_vector(cosine, check.features)), ""

    def probability_of(self, features: Sequence[float]) -> float:
        x = (np.asarray(features, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        z = float(x @ np.asarray(self.coef) + self.bias)
        return float(1.0 / (1.0 + np.exp(-z)))

    def accept(self, cosine: float, a: str, b: str, domain: str) -> tuple[bool, float, str]:
        if cosine < self.min_cosine:
            return False, 0.0, "below_min_cosine"
        prob, veto = self.probability(cosine, a, b)
        if veto:
            return False, prob, veto
        ok = prob >= self.threshold(domain)
        return ok, prob, "verified" if ok else "verifier_rejected"

    def raise_domain(self, domain: str, at_least: float) -> None:
        self.thresholds[domain] = max(self.threshold(domain), at_least)

    def refine(self, domain: str, audit: Sequence[tuple[float, bool]], max_false_rate: float) -> float:
        self.thresholds[domain] = refined_threshold(self.threshold(domain), audit, max_false_rate)
        return self.thresholds[domain]

    def to_json(self) -> str:
        return json.dumps(
            {
                "features": list(FEATURES),
                "coef": self.coef,
                "bias": self.bias,
                "mean": self.mean,
                "scale": self.scale,
                "default_threshold": self.default_threshold,
                "thresholds": self.thresholds,
                "min_cosine": self.min_cosine,
                "meta": self.meta,
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Verifier:
        raw = json.loads(text)
        if raw.get("features") != list(FEATURES):
            raise ValueError("verifier weights were trained on a different feature set")
        return cls(
            coef=[float(v) for v in raw["coef"]],
            bias=float(raw["bias"]),
            mean=[float(v) for v in raw["mean"]],
            scale=[float(v) for v in raw["scale"]],
            default_threshold=float(raw["default_threshold"]),
            thresholds={str(k): float(v) for k, v in raw.get("thresholds", {}).items()},
            min_cosine=float(raw.get("min_cosine", 0.8)),
            meta=dict(raw.get("meta", {})),
        )

    @classmethod
    def load(cls, path: Path | None = None) -> Verifier:
        """``path``, else the weights shipped inside the package."""
        if path is not None:
            return cls.from_json(path.read_text())
        return cls.from_json(resources.files("edge_agent.cache").joinpath(WEIGHTS_RESOURCE).read_text())

    @cached_property
    def identity(self) -> str:
        """A digest of the weights: an audited threshold belongs to the weights it was audited with."""
        weights = json.dumps([self.coef, self.bias, self.mean, self.scale])
        return hashlib.sha256(weights.encode()).hexdigest()[:16]


def load_verifier(settings: CacheSettings) -> Verifier:
    """The configured weights at the configured operating point."""
    verifier = Verifier.load(settings.verifier_file)
    verifier.min_cosine = max(verifier.min_cosine, settings.min_cosine)
    if settings.min_verifier_probability is not None:
        verifier.raise_threshold(settings.min_verifier_probability)
    return verifier


def refined_threshold(current: float, audit: Sequence[tuple[float, bool]], max_false_rate: float) -> float:
    """Raise ``current`` until audited hits (probability, was_correct) above it are clean enough."""
    for t in sorted({p for p, _ in audit if p >= current}):
        kept = [ok for p, ok in audit if p >= t]
        if kept and kept.count(False) / len(kept) <= max_false_rate:
            return max(current, t)
    return 1.0 + 1e-9 if audit else current  # nothing audited was clean: stop serving


def fit_logistic(
    x: Matrix, y: npt.NDArray[np.float64], l2: float = 1.0, iters: int = 50
) -> tuple[Matrix, float]:
    """Newton's method on the L2-penalised log loss: deterministic, no learning rate to tune."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    penalty = np.eye(d + 1) * l2
    penalty[d, d] = 0.0  # the bias is not shrunk
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(xb @ w)))
        grad = xb.T @ (p - y) + penalty @ w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + penalty
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return w[:d], float(w[d])


def fit_signed(x: Matrix, y: npt.NDArray[np.float64]) -> tuple[Matrix, float]:
    """Fit, drop every feature whose weight has the wrong sign, refit; repeat until none does."""
    signs = np.asarray([SIGNS[f] for f in FEATURES], dtype=np.float64)
    active = np.ones(x.shape[1], dtype=bool)
    while True:
        w, b = fit_logistic(x[:, active], y)
        full = np.zeros(x.shape[1])
        full[active] = w
        wrong = active & (full * signs < 0)
        if not wrong.any():
            return full, b
        active &= ~wrong


def choose_threshold(probs: Sequence[float], labels: Sequence[int], max_false_rate: float) -> float:
    """The lowest threshold whose accepted set keeps false hits at or under ``max_false_rate``."""
    return operating_point(probs, labels, max_false_rate).threshold


def train(
    rows: Sequence[tuple[float, str, str, int]],
    *,
    min_cosine: float,
    max_false_rate: float,
    meta: dict[str, Any],
) -> Verifier:
    """Fit on (cosine, cached text, query text, label) rows above ``min_cosine`` that pass the guards."""
    feats: list[list[float]] = []
    labels: list[int] = []
    for cosine, a, b, label in rows:
        if cosine < min_cosine:
            continue
        check = check_pair(a, b)
        if check.veto:
            continue
        feats.append(feature_vector(cosine, check.features))
        labels.append(int(label))
    x = np.asarray(feats, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    coef, bias = fit_signed((x - mean) / scale, y)
    model = Verifier(
        coef=[float(v) for v in coef],
        bias=bias,
        mean=[float(v) for v in mean],
        scale=[float(v) for v in scale],
        default_threshold=1.0,
        min_cosine=min_cosine,
        meta={**meta, "train_rows": len(labels), "train_positive": int(y.sum())},
    )
    probs = [model.probability_of(f) for f in feats]
    model.default_threshold = choose_threshold(probs, labels, max_false_rate)
    return model
