"""T6 and T7 at CI size: telemetry through a hub outage, lost acks and kills around the ack."""

from __future__ import annotations

from pathlib import Path

from edge_agent.reliability.delivery import t6_hub_down, t7_acks
from shared.reliability import Size


def test_t6_a_hub_outage_costs_no_answer_and_no_event(tmp_path: Path) -> None:
    r = t6_hub_down(Size.CI, tmp_path)
    assert r.passed, r.failures
    f = r.figures
    assert f["errors"] == 0 and f["events_lost"] == 0 and f["double_counted"] == 0
    assert f["events_stored"] == f["events_sent"] == f["answered"]


def test_t7_dropped_acks_and_kills_lose_and_double_count_nothing(tmp_path: Path) -> None:
    r = t7_acks(Size.CI, tmp_path)
    assert r.passed, r.failures
    f = r.figures
    assert f["events_lost"] == 0 and f["double_counted"] == 0
    assert isinstance(f["resends_deduplicated"], int) and f["resends_deduplicated"] > 0
    assert f["b_stored_unacked"] and f["c_committed_unacked"]
