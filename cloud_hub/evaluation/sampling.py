"""Stratified sampling of request events for evaluation, and the interval statistics its
weighted samples need (Wilson intervals with Kish's effective n, Newcombe differences).

Strata are domain × route × model, so a rare cell (say code on the edge model) is evaluated even
when chat on the cache dominates traffic. Within a stratum, events that carry a risk signal
(escalation, fallback, cache hit, regeneration) get ``oversample`` times the selection weight.
Every chosen event carries its inverse inclusion weight, so reports stay unbiased estimates of
the traffic, not of the sample.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass

from shared.telemetry import TelemetryEvent


@dataclass(frozen=True, slots=True)
class Sampled:
    edge_id: str
    event: TelemetryEvent
    weight: float  # how many traffic events this one stands for
    stratum: tuple[str, str, str]


def stratum(event: TelemetryEvent) -> tuple[str, str, str]:
    return (event.domain, event.route, event.response_model or event.request_model)


def risky(event: TelemetryEvent, regenerated: set[str]) -> bool:
    return (
        event.escalated
        or event.fallback
        or event.is_cache_hit
        or event.regeneration
        or (bool(event.response_id) and event.response_id in regenerated)
    )


def _key(seed: int, edge_id: str, event_id: str) -> float:
    digest = hashlib.blake2b(f"{seed}:{edge_id}:{event_id}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 1) / 2**64


def stratified_sample(
    events: list[tuple[str, TelemetryEvent]],
    per_stratum: int = 50,
    oversample: float = 4.0,
    seed: int = 0,
) -> list[Sampled]:
    """Weighted sampling without replacement (Efraimidis–Spirakis keys), deterministic per seed."""
    if per_stratum <= 0 or oversample < 1.0:
        raise ValueError("per_stratum must be positive and oversample at least 1")
    regenerated = {e.regenerates for _, e in events if e.regenerates}
    groups: dict[tuple[str, str, str], list[tuple[float, float, str, TelemetryEvent]]] = defaultdict(list)
    for edge_id, event in events:
        w = oversample if risky(event, regenerated) else 1.0
        key = _key(seed, edge_id, event.event_id) ** (1.0 / w)
        groups[stratum(event)].append((key, w, edge_id, event))
    out: list[Sampled] = []
    for name, members in sorted(groups.items()):
        members.sort(key=lambda m: m[0], reverse=True)
        chosen = members[:per_stratum]
        if len(chosen) == len(members):
            out.extend(Sampled(e, ev, 1.0, name) for _, _, e, ev in chosen)
            continue
        # inclusion probability of each chosen event, approximated as k·w/Σw (capped at 1)
        total_w = sum(m[1] for m in members)
        for _, w, edge_id, event in chosen:
            p = min(1.0, per_stratum * w / total_w)
            out.append(Sampled(edge_id, event, 1.0 / p if p > 0 else math.inf, name))
    return out


# --- interval statistics ----------------------------------------------------------------------

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
    # the interval always holds p; rounding can leave its bound a hair inside at p = 0 or 1
    return RateCI(p, min(max(0.0, centre - half), p), max(min(1.0, centre + half), p), n)


def weighted_wilson(passed: list[bool], weights: list[float], z: float = Z95) -> RateCI:
    """Wilson interval for a weighted rate: the inverse-probability weights of a stratified
    sample make the rate unbiased, and Kish's n_eff = (Σw)²/Σw² widens the interval to match."""
    total = sum(weights)
    if total <= 0:
        return RateCI(0.0, 0.0, 1.0, 0.0)
    rate = sum(w for ok, w in zip(passed, weights, strict=True) if ok) / total
    n_eff = total * total / sum(w * w for w in weights)
    ci = wilson(rate * n_eff, n_eff, z)
    return RateCI(rate, min(ci.low, rate), max(ci.high, rate), n_eff)


def difference_ci(a: RateCI, b: RateCI, z: float = Z95) -> tuple[float, float]:
    """Newcombe's hybrid score interval for a.rate - b.rate from two Wilson intervals."""
    d = a.rate - b.rate
    lower = d - math.sqrt((a.rate - a.low) ** 2 + (b.high - b.rate) ** 2)
    upper = d + math.sqrt((a.high - a.rate) ** 2 + (b.rate - b.low) ** 2)
    return lower, upper
