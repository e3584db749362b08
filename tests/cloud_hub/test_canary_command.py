"""``cloud-hub canary``: an operator promotes or rolls back the running canary by hand, and the
hub's policy feed reads the result as it reads the controller's own decisions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cloud_hub.commands import canary
from cloud_hub.evaluation.canary import CanaryController
from cloud_hub.policy_feed import PolicyFeed


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    canary.add_arguments(parser)
    return canary.run(parser.parse_args(list(argv)))


def _started(home: Path) -> CanaryController:
    controller = CanaryController(home / "policy.json", initial_threshold=0.75)
    controller.start(0.6, share=0.2)
    return controller


def test_rollback_keeps_the_policy_and_ends_the_canary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _started(tmp_path)
    feed = PolicyFeed(tmp_path / "policy.json")
    feed.refresh()
    assert feed.current is not None and feed.current.canary_version == "v1"
    assert _run("rollback", "--home", str(tmp_path)) == 0
    assert json.loads(capsys.readouterr().out) == {
        "canary": "v1", "decision": "rollback", "version": "v0", "threshold": 0.75
    }  # fmt: skip
    assert feed.refresh() and feed.current is not None
    assert feed.current.canary_version is None and feed.current.threshold == 0.75
    state = CanaryController(tmp_path / "policy.json").state
    assert state.history[-1]["decision"] == "rollback" and state.history[-1]["manual"] == 1.0


def test_promote_makes_the_canary_threshold_the_policy(tmp_path: Path) -> None:
    _started(tmp_path)
    assert _run("promote", "--home", str(tmp_path)) == 0
    state = CanaryController(tmp_path / "policy.json").state
    assert (state.version, state.threshold, state.canary_version) == ("v1", 0.6, None)


def test_without_a_canary_there_is_nothing_to_decide(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run("status", "--home", str(tmp_path)) == 0
    assert "no policy" in capsys.readouterr().out
    assert _run("rollback", "--home", str(tmp_path)) == 1
    assert "no canary is running" in capsys.readouterr().out
    assert not (tmp_path / "policy.json").exists()
    CanaryController(tmp_path / "policy.json").start(0.7)
    assert _run("status", "--home", str(tmp_path)) == 0
    assert json.loads(capsys.readouterr().out)["canary_version"] == "v1"
