"""T33 at CI size: a burst of concurrent requests cannot spend past a tenant's budget."""

from __future__ import annotations

from pathlib import Path

from edge_agent.reliability.budgets import t33_budgets
from shared.reliability import Size


def test_t33_concurrent_requests_cannot_spend_past_the_budget(tmp_path: Path) -> None:
    r = t33_budgets(Size.CI, tmp_path)
    assert r.passed, r.failures
    f = r.figures
    assert f["exhausted"] is True and f["served_after_exhaustion"] == 0
    assert isinstance(f["spent_usd"], float) and isinstance(f["max_reservation_usd"], float)
    assert f["spent_usd"] <= 0.01 + f["max_reservation_usd"]
