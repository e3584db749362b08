"""T10 and T11 at CI size: a stalling, crashing hub; liveness under silence and saturation."""

from __future__ import annotations

from pathlib import Path

from edge_agent.reliability.pirate import t10_pirate, t11_heartbeat
from shared.reliability import Size


def test_t10_every_numbered_request_is_answered_exactly_once(tmp_path: Path) -> None:
    r = t10_pirate(Size.CI, tmp_path)
    assert r.passed, r.failures
    f = r.figures
    assert f["requests_sent"] == f["answered_once"]
    assert f["answered_twice"] == 0 and f["wrong_or_spliced"] == 0 and f["lost"] == 0


def test_t11_a_dead_hub_is_noticed_in_budget_and_a_busy_one_never_called_dead(tmp_path: Path) -> None:
    r = t11_heartbeat(Size.CI, tmp_path)
    assert r.passed, r.failures
    f = r.figures
    assert f["false_dead_verdicts"] == 0
    assert isinstance(f["detect_kill_max_s"], float) and f["detect_kill_max_s"] <= 2.0
