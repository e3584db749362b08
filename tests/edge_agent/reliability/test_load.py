"""T35 and T37 at CI size: steady open-loop load, and three times capacity."""

from __future__ import annotations

from pathlib import Path

from edge_agent.reliability.load import t35_load, t37_overload
from shared.reliability import Size


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
