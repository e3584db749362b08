"""Interval statistics for pass rates: Wilson score intervals (weighted via Kish's effective n)
and a non-inferiority check for canary versus control."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class RateCI:
    rate: float
    low: float
    high: float
    n: float  # effective sample size


def wilson(successes: float, n: float, z: float = Z95) -> RateCI:
    if n <= 0:
        return RateCI(0.0, 0.0, 1.0, 0.0)
    p = min(max(successes / n, 0.0), 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return RateCI(p, max(0.0, centre - half), min(1.0, centre + half), n)


def weighted_wilson(passed: list[bool], weights: list[float], z: float = Z95) -> RateCI:
    """Wilson interval for a weighted rate: the inverse-probability weights of a stratified
    sample make the rate unbiased, and Kish's n_eff = (Σw)²/Σw² widens the interval to match."""
    total = sum(weights)
    if total <= 0:
        return RateCI(0.0, 0.0, 1.0, 0.0)
    rate = sum(w for ok, w in zip(passed, weights, strict=True) if ok) / total
    n_eff = total * total / sum(w * w for w in weights)
    ci = wilson(rate * n_eff, n_eff, z)
    return RateCI(rate, ci.low, ci.high, n_eff)


def difference_ci(a: RateCI, b: RateCI, z: float = Z95) -> tuple[float, float]:
    """Newcombe's hybrid score interval for a.rate - b.rate from two Wilson intervals."""
    d = a.rate - b.rate
    lower = d - math.sqrt((a.rate - a.low) ** 2 + (b.high - b.rate) ** 2)
    upper = d + math.sqrt((a.high - a.rate) ** 2 + (b.rate - b.low) ** 2)
    return lower, upper
