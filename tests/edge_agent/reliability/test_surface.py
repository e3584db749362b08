"""T25-T27 at CI size: addresses, binds and secrets a client cannot bend."""

from __future__ import annotations

from pathlib import Path

from edge_agent.reliability.surface import (
    plain_comparisons,
    t25_base_urls,
    t26_binds,
    t27_secrets,
)
from shared.reliability import Size


def test_t25_no_request_can_choose_where_the_router_connects(tmp_path: Path) -> None:
    r = t25_base_urls(Size.CI, tmp_path)
    assert r.passed, r.failures
    assert r.figures["connections_to_target"] == 0 and r.figures["control_connection_counted"] == 1


def test_t26_loopback_binds_and_rebound_hosts_refused(tmp_path: Path) -> None:
    r = t26_binds(Size.CI, tmp_path)
    assert r.passed, r.failures
    assert r.figures["exposed_sockets"] == 0 and r.figures["header_cases_wrong"] == 0


def test_t27_secrets_stay_out_of_logs_and_telemetry(tmp_path: Path) -> None:
    r = t27_secrets(Size.CI, tmp_path)
    assert r.passed, r.failures
    f = r.figures
    assert f["api_key_occurrences"] == f["wrong_key_occurrences"] == f["email_occurrences"] == 0
    assert f["control_planted_found"] == 1


def test_t27_the_comparison_gate_ignores_lengths_and_literals() -> None:
    assert not plain_comparisons("if len(token.hub_key) != 40 or args.token == '-':\n    pass\n")
    assert plain_comparisons("ok = request_token == settings.dashboard_token\n")
