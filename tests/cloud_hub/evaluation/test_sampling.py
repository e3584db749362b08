from __future__ import annotations

from cloud_hub.evaluation.sampling import Sampled, difference_ci, stratified_sample, weighted_wilson, wilson
from shared.telemetry import TelemetryEvent


def _events() -> list[tuple[str, TelemetryEvent]]:
    out = []
    for i in range(2000):
        reason = "low_confidence" if i % 10 == 0 else ""
        out.append(
            (
                "e",
                TelemetryEvent(
                    event_id=f"c{i}", route="edge_local", domain="general", escalation_reason=reason
                ),
            )
        )
    for i in range(30):
        out.append(("e", TelemetryEvent(event_id=f"k{i}", route="edge_local", domain="code")))
    return out


def test_every_stratum_is_covered_and_capped() -> None:
    sample = stratified_sample(_events(), per_stratum=100, seed=1)
    by: dict[str, list[Sampled]] = {}
    for s in sample:
        by.setdefault(s.stratum[0], []).append(s)
    assert len(by["general"]) == 100
    assert len(by["code"]) == 30 and all(s.weight == 1.0 for s in by["code"])  # rare cell kept whole


def test_risky_events_are_oversampled_and_weights_restore_the_population() -> None:
    sample = [s for s in stratified_sample(_events(), per_stratum=200, oversample=4.0, seed=2)
              if s.stratum[0] == "general"]  # fmt: skip
    share = sum(s.event.escalated for s in sample) / len(sample)
    assert share > 0.25  # 10% of traffic, about 31% of the sample at 4× weight
    weighted = sum(s.weight for s in sample if s.event.escalated) / sum(s.weight for s in sample)
    assert 0.06 < weighted < 0.14


def test_sampling_is_deterministic_per_seed() -> None:
    a = [s.event.event_id for s in stratified_sample(_events(), 50, seed=3)]
    b = [s.event.event_id for s in stratified_sample(_events(), 50, seed=3)]
    c = [s.event.event_id for s in stratified_sample(_events(), 50, seed=4)]
    assert a == b and a != c


def test_wilson_intervals() -> None:
    ci = wilson(45, 50)
    assert 0.78 < ci.low < 0.79 and 0.95 < ci.high < 0.96  # textbook value [0.786, 0.957]
    assert wilson(0, 0).high == 1.0
    equal = weighted_wilson([True, False] * 50, [1.0] * 100)
    skewed = weighted_wilson([True, False] * 50, [1.0, 9.0] * 50)
    assert skewed.rate == 0.1 and skewed.n < equal.n  # unequal weights shrink the effective n
    lo, hi = difference_ci(wilson(90, 100), wilson(60, 100))
    assert 0.15 < lo < hi < 0.45


def test_a_perfect_or_zero_rate_lies_inside_its_interval() -> None:
    # the Wilson bound at p = 0 or 1 is exactly 0 or 1; rounding used to leave it just inside
    for n in range(1, 200):
        assert wilson(n, n).high == 1.0 and wilson(0, n).low == 0.0, n
        assert weighted_wilson([True] * n, [1.0] * n).high == 1.0, n
