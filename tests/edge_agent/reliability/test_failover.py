from __future__ import annotations

from pathlib import Path

from edge_agent.reliability.failover import t32_failover, t34_cancel
from shared.reliability import Size


def test_t32_a_broken_stream_is_never_spliced_with_another_answer(tmp_path: Path) -> None:
    r = t32_failover(Size.CI, tmp_path)
    assert r.passed, r.failures
    assert r.figures["mixed"] == 0 and r.figures["two_endings"] == 0 and r.figures["cut_cleanly"] == 10


def test_t34_a_client_hanging_up_cancels_the_hubs_work(tmp_path: Path) -> None:
    r = t34_cancel(Size.CI, tmp_path)
    assert r.passed, r.failures
    assert r.figures["upstream_calls_abandoned"] == r.figures["cancels"] == 40
    assert r.figures["upstream_still_running"] == 0
