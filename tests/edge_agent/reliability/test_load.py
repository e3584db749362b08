"""T33, T35 and T37 at CI size: budgets under concurrency, steady load, overload."""

from __future__ import annotations

from pathlib import Path

from edge_agent.reliability.load import t33_budgets, t35_load, t37_overload
from shared.reliability import Size


def test_t33_concurrent_requests_cannot_spend_past_the_budget(tmp_path: Path) -> None:
    r = t33_budgets(Size.CI, tmp_path)
    assert r.passed, r.failures
    f = r.figures
    assert f["exhausted"] is True and f["served_after_exhaustion"] == 0
    assert isinstance(f["spent_usd"], float) and isinstance(f["max_reservation_usd"], float)
    assert f["spent_usd"] <= 0.01 + f["max_reservation_usd"]


def test_t35_each_route_keeps_up_with_an_open_loop_load(tmp_path: Path) -> None:
    r = t35_load(Size.CI, tmp_path)
    assert r.passed, r.failures
    assert r.figures["exact_errors"] == r.figures["semantic_errors"] == r.figures["escalation_errors"] == 0


def test_t37_three_times_capacity_is_refused_fast_and_recovers(tmp_path: Path) -> None:
    r = t37_overload(Size.CI, tmp_path)
    assert r.passed, r.failures
    f = r.figures
    assert isinstance(f["refused_fast"], int) and f["refused_fast"] > 0
    assert f["refusals_without_retry_after"] == 0 and f["other_failures"] == 0
    assert isinstance(f["recovery_s"], float) and f["recovery_s"] < 10
