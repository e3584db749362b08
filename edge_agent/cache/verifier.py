"""Learned verifier for semantic-cache candidates: logistic regression over pair features.

A cosine threshold alone cannot separate paraphrases from near-misses (on Quora pairs, 0.97 still
lets through about 9% wrong hits), so a candidate that survives the hard guards must also score
above a per-domain probability threshold. Weights are plain JSON, fitted deterministically by
Newton's method on a training split only; thresholds start from the training data and an audit of
served hits can only raise them (``refine``).

Every candidate gets a verdict (``decide``): ``accept`` at the domain's operating point, ``grey``
between that point and ``grey_floor`` (the score below which the training pairs are mostly not
reusable), ``reject`` below it or on a guard's veto. Grey candidates are not served; they are the
ones worth a stronger judge's time. The shipped point is named ``safe``; a domain relaxed in config
serves at ``relaxed:<domain>``, one an audit raised at ``audited:<domain>``, and the trace says which.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
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

SAFE = "safe"
STRICT = "strict"


class Verdict(StrEnum):
    ACCEPT = "accept"
    GREY = "grey"
    REJECT = "reject"


@dataclass(frozen=True)
class Decision:
    """The verifier's verdict on one candidate and the operating point that gave it."""

    verdict: Verdict
    probability: float
    reason: str  # verified | identical | grey_zone | verifier_rejected | below_min_cosine | a veto
    point: str  # "safe", "strict", "relaxed:<domain>" or "audited:<domain>"
    threshold: float

    @property
    def accepted(self) -> bool:
        return self.verdict is Verdict.ACCEPT


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
    # below this probability a candidate is clearly not reusable: no judge needs to see it
    grey_floor: float = 1.0
    # thresholds fitted on the training split, by the false-hit rate they keep ("0.05": 0.93, ...)
    points: dict[str, float] = field(default_factory=dict)
    default_point: str = SAFE
    point_names: dict[str, str] = field(default_factory=dict)  # domain → name of its point

    def threshold(self, domain: str) -> float:
        return self.thresholds.get(domain, self.default_threshold)

    def serves_paraphrases(self, domain: str) -> bool:
        """Whether ``domain``'s point can accept anything but an identical question: below 1.0 a
        candidate's probability can reach the threshold; at 1.0 (the safe point) it never does."""
        return self.threshold(domain) < 1.0

    def point(self, domain: str) -> str:
        """The name of the operating point ``domain`` is served at."""
        if domain not in self.thresholds:
            return self.default_point
        return self.point_names.get(domain, f"audited:{domain}")

    def raise_threshold(self, at_least: float) -> None:
        """A stricter operating point for every domain; never lowers a threshold an audit raised."""
        if at_least > self.default_threshold:
            self.default_threshold, self.default_point = at_least, STRICT
        for d, t in self.thresholds.items():
            if at_least > t:
                self.thresholds[d], self.point_names[d] = at_least, STRICT

    def relax_domain(self, domain: str, max_false_rate: float) -> float:
        """Serve ``domain`` at the fitted point for ``max_false_rate`` (never above the default).

        The threshold is the training split's for the largest fitted rate not above the one asked
        for, so a relaxation is always a point the training data vouches for.
        """
        fitted = [(float(r), t) for r, t in self.points.items() if float(r) <= max_false_rate]
        if not fitted:
            raise ValueError(
                f"no operating point fitted at or below {max_false_rate:g} false hits"
                f" (fitted: {sorted(self.points, key=float)})"
            )
        threshold = min(max(fitted)[1], self.default_threshold)
        self.thresholds[domain] = threshold
        self.point_names[domain] = f"relaxed:{domain}"
        return threshold

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

    def decide(self, cosine: float, cached: str, query: str, domain: str) -> Decision:
        """Whether ``query`` may be served the answer stored for ``cached``, in ``domain``."""
        point, threshold = self.point(domain), self.threshold(domain)
        if cosine < self.min_cosine:
            return Decision(Verdict.REJECT, 0.0, "below_min_cosine", point, threshold)
        if question_form(cached) == question_form(query):
            # the same question up to case and punctuation: nothing to verify
            return Decision(Verdict.ACCEPT, 1.0, "identical", point, threshold)
        prob, veto = self.probability(cosine, cached, query)
        if veto:
            return Decision(Verdict.REJECT, prob, veto, point, threshold)
        if prob >= threshold:
            return Decision(Verdict.ACCEPT, prob, "verified", point, threshold)
        if prob >= self.grey_floor:
            return Decision(Verdict.GREY, prob, "grey_zone", point, threshold)
        return Decision(Verdict.REJECT, prob, "verifier_rejected", point, threshold)

    def accept(self, cosine: float, a: str, b: str, domain: str) -> tuple[bool, float, str]:
        d = self.decide(cosine, a, b, domain)
        reason = "verified" if d.reason == "identical" else d.reason
        return d.accepted, d.probability, "verifier_rejected" if reason == "grey_zone" else reason

    def raise_domain(self, domain: str, at_least: float) -> None:
        if at_least > self.threshold(domain):
            self.thresholds[domain] = at_least
            self.point_names[domain] = f"audited:{domain}"

    def refine(self, domain: str, audit: Sequence[tuple[float, bool]], max_false_rate: float) -> float:
        self.raise_domain(domain, refined_threshold(self.threshold(domain), audit, max_false_rate))
        return self.threshold(domain)

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
                "point_names": self.point_names,
                "min_cosine": self.min_cosine,
                "grey_floor": self.grey_floor,
                "points": self.points,
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
            # weights from before grey zones had none: every candidate below the point is rejected
            grey_floor=float(raw.get("grey_floor", 1.0)),
            points={str(k): float(v) for k, v in raw.get("points", {}).items()},
            point_names={str(k): str(v) for k, v in raw.get("point_names", {}).items()},
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
    for domain, rate in settings.relaxed_domains.items():
        verifier.relax_domain(domain, rate)
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


# the false-hit rates a domain may be relaxed to, each a threshold fitted on the training split
POINT_RATES = (0.02, 0.05, 0.08, 0.1)
# the grey zone ends where fewer than this share of a band of ranked training pairs could reuse
# the answer: below it the edge drops a candidate without asking the hub
GREY_PRECISION = 0.6
GREY_WINDOW = 500


def grey_floor(probs: Sequence[float], labels: Sequence[int], min_precision: float, window: int) -> float:
    """The score where a band of ``window`` ranked pairs first holds under ``min_precision`` positives.

    0.0 (every candidate the guards pass is grey) when no band falls that low.
    """
    order = np.argsort(-np.asarray(probs), kind="stable")
    ranked = np.asarray(labels, dtype=np.float64)[order]
    if len(ranked) < window:
        return 0.0
    bands = np.convolve(ranked, np.ones(window) / window, mode="valid")
    low = np.flatnonzero(bands < min_precision)
    return float(np.asarray(probs)[order][low[0] + window - 1]) if len(low) else 0.0


def train(
    rows: Sequence[tuple[float, str, str, int]],
    *,
    min_cosine: float,
    max_false_rate: float,
    meta: dict[str, Any],
) -> Verifier:
    """Fit on (cosine, cached text, query text, label) rows above ``min_cosine`` that pass the guards.

    The safe point is the lowest threshold whose training pairs keep false hits at
    ``max_false_rate``; where none does, 1.0: only identical question forms are served, and every
    other candidate above the grey floor is left to a stronger judge. Identical forms are served
    whatever the threshold, so they take no part in choosing it (Quora labels some of them
    "not duplicate", which no answer-reuse judgement would).
    """
    feats: list[list[float]] = []
    labels: list[int] = []
    identical: list[bool] = []
    for cosine, a, b, label in rows:
        if cosine < min_cosine:
            continue
        check = check_pair(a, b)
        if check.veto:
            continue
        feats.append(feature_vector(cosine, check.features))
        labels.append(int(label))
        identical.append(question_form(a) == question_form(b))
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
    keep = [i for i, same in enumerate(identical) if not same]
    probs = [model.probability_of(feats[i]) for i in keep]
    kept = [labels[i] for i in keep]
    for rate in sorted({*POINT_RATES, max_false_rate}):
        point = operating_point(probs, kept, rate)
        if point.served:  # a rate the training data cannot vouch for gets no point
            model.points[f"{rate:g}"] = point.threshold
    safe = operating_point(probs, kept, max_false_rate)
    model.default_threshold = safe.threshold
    model.grey_floor = min(grey_floor(probs, kept, GREY_PRECISION, GREY_WINDOW), safe.threshold)
    model.meta["safe"] = {
        "max_false_rate": max_false_rate,
        "train_false_hit_rate": safe.false_hit_rate,
        "train_recall": safe.recall,
        "train_served": safe.served,
        "identical_pairs": len(labels) - len(keep),
    }
    model.meta["grey"] = {"min_precision": GREY_PRECISION, "window": GREY_WINDOW}
    return model
