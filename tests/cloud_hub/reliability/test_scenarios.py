"""The hub-side catalogue at CI size (T12, T14, T15, T16, T17, T30, T31)."""

from __future__ import annotations

from pathlib import Path

from cloud_hub.reliability.fuzz import t17_fuzz
from cloud_hub.reliability.peers import pickle_violations, t15_peers, t16_no_pickle
from cloud_hub.reliability.transport import t12_stalled, t14_big_frame
from cloud_hub.reliability.upstream import t30_retries, t31_breaker
from shared.reliability import Size


def test_t12_slow_and_silent_peers_never_block_the_hub(tmp_path: Path) -> None:
    r = t12_stalled(Size.CI, tmp_path)
    assert r.passed, r.failures
    f = r.figures
    assert f["reader_received"] == f["deltas_published"] == f["stalled_after_snapshot"]
    assert isinstance(f["replies_unroutable"], int) and f["replies_unroutable"] >= 1


def test_t14_a_100_mib_frame_is_cut_off_before_it_is_buffered(tmp_path: Path) -> None:
    r = t14_big_frame(Size.CI, tmp_path)
    assert r.passed, r.failures
    assert r.figures["sender_disconnected"] is True and r.figures["hub_alive"] is True


def test_t15_strangers_reach_no_handler_unless_the_authenticator_is_off(tmp_path: Path) -> None:
    r = t15_peers(Size.CI, tmp_path)
    assert r.passed, r.failures
    f = r.figures
    assert f["handler_reached_by_strangers"] == 0 and f["frames_back_unknown_key"] == 0
    assert f["control_reached_handler"] is True


def test_t16_no_unpickler_in_the_source_and_none_on_the_wire(tmp_path: Path) -> None:
    r = t16_no_pickle(Size.CI, tmp_path)
    assert r.passed, r.failures
    assert r.figures["pickle_sites"] == 0 and r.figures["canary_created"] is False
    assert r.figures["payload_live"] is True


def test_t16_the_gate_knows_safe_loaders_from_unsafe_ones() -> None:
    assert not pickle_violations(
        "import yaml\nyaml.load(s, Loader=yaml.SafeLoader)\ntorch.load(f, weights_only=True)\n"
    )
    assert pickle_violations("from dill import loads\n")


def test_t17_fuzzed_frames_cost_a_typed_error_and_nothing_else(tmp_path: Path) -> None:
    r = t17_fuzz(Size.CI, tmp_path)
    assert r.passed, r.failures
    assert r.figures["crashes"] == 0 and r.figures["hub_handler_exceptions"] == 0


def test_t30_each_failure_class_is_retried_only_as_it_allows() -> None:
    r = t30_retries(Size.CI, Path())
    assert r.passed, r.failures
    assert r.figures["wrong_retry_behaviour"] == 0 and r.figures["target_tried_twice"] == 0


def test_t31_an_open_breaker_spares_the_failing_target_and_closes_on_recovery() -> None:
    r = t31_breaker(Size.CI, Path())
    assert r.passed, r.failures
    assert r.figures["breaker_state_after"] == "closed"
