"""T28 at CI size: requests over the limits are refused, fast, before any model sees them."""

from __future__ import annotations

from pathlib import Path

from edge_agent.reliability.limits import t28_limits
from shared.reliability import Size


def test_t28_over_limit_requests_never_reach_a_model(tmp_path: Path) -> None:
    r = t28_limits(Size.CI, tmp_path)
    assert r.passed, r.failures
    assert r.figures["reached_the_model"] == 0 and r.figures["wrong_status"] == 0
