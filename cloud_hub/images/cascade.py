"""Small/large splits of image generation: a learned cascade gate and a split denoising schedule.

**Cascade** (DiffServe): the small model draws first; ``QualityGate`` reads features of its
picture and says whether the large model must draw it again. The gate is a logistic regression
in numpy over standardised features (``features.gate_features``, or CLIP image embeddings on a
GPU hub), stored as JSON. With random weights there is nothing true to learn, so here it is
trained only in tests on labels with a known rule; the recipe for real labels is in
``docs/images-video.md``: draw a prompt set with both models, label an image 1 when the large
model's CLIP score beats the small one's by more than a margin, fit, then pick the threshold
that meets the quality target at the least escalation.

**Split** (Hybrid SD): the large model runs the first ``split`` share of the steps, where
layout is decided, and hands its latent to the small model for the rest, where detail is
added. Both must share one latent space (same VAE and schedule); the hand-off is one latent
(4×64×64 float16 = 32 KB at 512 px), small enough for the edge link, so the small half can run
on the edge. The split share is the policy's one parameter.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cloud_hub.images.base import F32, ImageBackend, Latent, Rendered, RenderSpec
from cloud_hub.images.features import FeatureFn, gate_features


@dataclass(frozen=True, slots=True)
class QualityGate:
    weights: F32
    bias: float
    mean: F32
    scale: F32
    threshold: float = 0.5

    def probability(self, features: F32) -> float:
        """Probability that the large model is needed for the picture with these features."""
        z = float(((features - self.mean) / self.scale) @ self.weights + self.bias)
        return float(1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0))))

    def escalate(self, features: F32) -> bool:
        return self.probability(features) >= self.threshold

    def save(self, path: Path) -> None:
        body = {
            "weights": self.weights.tolist(),
            "bias": self.bias,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "threshold": self.threshold,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(body), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> QualityGate:
        b = json.loads(path.read_text(encoding="utf-8"))
        vec = [np.asarray(b[k], dtype=np.float32) for k in ("weights", "mean", "scale")]
        return cls(vec[0], float(b["bias"]), vec[1], vec[2], float(b["threshold"]))


def train_gate(
    features: F32, needs_large: np.ndarray, *, l2: float = 1e-2, iterations: int = 50, threshold: float = 0.5
) -> QualityGate:
    """L2-regularised logistic regression by Newton's method (a handful of iterations converge)."""
    y = np.asarray(needs_large, dtype=np.float64).reshape(-1)
    if features.ndim != 2 or len(features) != len(y) or len(np.unique(y)) < 2:
        raise ValueError("need an (n, d) feature matrix and labels of both classes")
    mean = features.mean(axis=0)
    scale = np.where(features.std(axis=0) > 1e-8, features.std(axis=0), 1.0)
    x = np.hstack([(features - mean) / scale, np.ones((len(y), 1))]).astype(np.float64)
    w = np.zeros(x.shape[1])
    reg = np.full(x.shape[1], l2 * len(y))
    reg[-1] = 0.0  # the bias is not shrunk
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -40.0, 40.0)))
        grad = x.T @ (p - y) + reg * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return QualityGate(
        w[:-1].astype(np.float32), float(w[-1]), mean.astype(np.float32), scale.astype(np.float32), threshold
    )


@dataclass(frozen=True, slots=True)
class CascadeOutcome:
    rendered: Rendered
    escalated: bool
    probability: float
    small_steps: int
    large_steps: int
    wall_s: float


class CascadePolicy:
    def __init__(
        self, small: ImageBackend, large: ImageBackend, gate: QualityGate, features: FeatureFn = gate_features
    ) -> None:
        self.small, self.large, self.gate, self.features = small, large, gate, features

    def render(self, spec: RenderSpec) -> CascadeOutcome:
        began = time.perf_counter()
        first = self.small.fresh(spec)
        p = self.gate.probability(self.features(first.pixels))
        if p < self.gate.threshold:
            return CascadeOutcome(first, False, p, first.steps_run, 0, time.perf_counter() - began)
        second = self.large.fresh(spec)
        return CascadeOutcome(second, True, p, first.steps_run, second.steps_run, time.perf_counter() - began)


@dataclass(frozen=True, slots=True)
class SplitOutcome:
    rendered: Rendered
    large_steps: int
    small_steps: int
    handoff: Latent
    large_s: float
    small_s: float


class SplitPolicy:
    def __init__(self, large: ImageBackend, small: ImageBackend, split: float) -> None:
        if large.latent_space != small.latent_space:
            raise ValueError("a split needs one latent space: the same VAE and noise schedule")
        if not 0.0 < split < 1.0:
            raise ValueError("split is the large model's share of the steps, strictly between 0 and 1")
        self.large, self.small, self.split = large, small, split

    def handoff_step(self, steps: int) -> int:
        return min(max(1, round(self.split * steps)), steps - 1)

    def render(self, spec: RenderSpec) -> SplitOutcome:
        k = self.handoff_step(spec.steps)
        head = self.large.fresh(replace(spec, harvest=(k,), stop_at=k))
        handoff = next(lt for lt in head.latents if lt.step == k)
        # the hand-off latent is exactly at the level where step k begins: nothing is re-noised,
        # the small model just carries on the trajectory
        tail = self.small.resume(replace(spec, eta=0.0), handoff, k)
        return SplitOutcome(tail, k, tail.steps_run, handoff, head.wall_s, tail.wall_s)
