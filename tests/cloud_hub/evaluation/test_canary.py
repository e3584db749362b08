from __future__ import annotations

import random
from pathlib import Path

import pytest

from cloud_hub.evaluation.canary import CanaryController, propose_threshold
from cloud_hub.evaluation.results import ResultRow
from cloud_hub.evaluation.runner import EvalConfig, EvalRunner
from cloud_hub.telemetry.store import TelemetryStore
from tests.cloud_hub.evaluation.conftest import batch, traffic


def _row(i: int, passed: bool, version: str, canary: bool, confidence: float | None = None) -> ResultRow:
    return ResultRow("r", "e", f"{version}-{i}", "math", "edge_local", "m", 1.0, "reference:gsm8k", passed,
                     float(passed), None, "", canary, version, confidence)  # fmt: skip


def _arm(n: int, rate: float, version: str, canary: bool, seed: int) -> list[ResultRow]:
    rng = random.Random(seed)
    return [_row(i, rng.random() < rate, version, canary) for i in range(n)]


def test_a_canary_that_lowers_quality_is_rolled_back(
    tmp_path: Path, gsm8k_answers: list[tuple[str, str, str]]
) -> None:
    controller = CanaryController(tmp_path / "policy.json", initial_threshold=0.8)
    version = controller.start(0.5, share=0.2)
    # real traffic scored by the real runner: the canary arm answers worse
    store = TelemetryStore(tmp_path / "hub.db")
    control = traffic(gsm8k_answers, "edge_local", 150, 0.05, seed=3, policy_version="v0")
    canary = traffic(gsm8k_answers, "edge_local", 150, 0.45, seed=4, policy_version=version, canary=True)
    store.ingest("edge", batch(control + canary))
    outcome = EvalRunner(store).run(EvalConfig(per_stratum=1000))
    decision, stats = controller.decide(outcome.rows)
    assert decision == "rollback", stats
    assert stats["diff_high"] < 0
    assert controller.state.threshold == 0.8 and controller.state.version == "v0"
    assert controller.state.canary_version is None
    reloaded = CanaryController(tmp_path / "policy.json")
    assert reloaded.state.history[-1]["decision"] == "rollback"
    assert reloaded.assign("any").version == "v0"
    store.close()


def test_a_canary_that_holds_quality_is_promoted(tmp_path: Path) -> None:
    controller = CanaryController(tmp_path / "policy.json", initial_threshold=0.8)
    version = controller.start(0.7, share=0.5)
    rows = _arm(600, 0.9, "v0", False, 1) + _arm(600, 0.9, version, True, 2)
    decision, _ = controller.decide(rows, margin=0.05)
    assert decision == "promote"
    assert (controller.state.version, controller.state.threshold) == (version, 0.7)


def test_too_little_evidence_continues(tmp_path: Path) -> None:
    controller = CanaryController(tmp_path / "policy.json")
    version = controller.start(0.6)
    decision, _ = controller.decide(_arm(10, 0.9, "v0", False, 1) + _arm(10, 0.5, version, True, 2))
    assert decision == "continue"
    assert controller.state.canary_version == version
    with pytest.raises(RuntimeError):
        controller.start(0.5)


def test_assignment_is_deterministic_and_near_the_share(tmp_path: Path) -> None:
    controller = CanaryController(tmp_path / "policy.json")
    controller.start(0.6, share=0.1)
    arms = [controller.assign(f"req-{i}") for i in range(5000)]
    share = sum(a.canary for a in arms) / len(arms)
    assert 0.08 < share < 0.12
    assert controller.assign("req-7") == controller.assign("req-7")
    assert {a.threshold for a in arms if a.canary} == {0.6}


def test_threshold_proposal_follows_confidence_calibration() -> None:
    rng = random.Random(0)
    rows = []
    for i in range(400):
        confidence = rng.uniform(0.5, 1.0)
        # answers are right with probability equal to the confidence: calibrated confidence
        rows.append(_row(i, rng.random() < confidence, "v0", False, confidence))
    proposal = propose_threshold(rows, current=0.5, target=0.85)
    # answers at or above t pass at (1 + t) / 2 on average; the Wilson bound needs a little more
    assert 0.65 < proposal.proposed < 0.8, proposal
    assert proposal.ci_low >= 0.85
    accepted = [
        r.passed for r in rows if r.local_confidence is not None and r.local_confidence >= proposal.proposed
    ]
    assert sum(accepted) / len(accepted) >= 0.85
    raise_it = propose_threshold([_row(i, i % 2 == 0, "v0", False, 0.9) for i in range(50)], 0.75, 0.9)
    assert raise_it.proposed > 0.75 and raise_it.reason.startswith("below")
    safe = propose_threshold([_row(i, True, "v0", False, 0.8 + i / 1000) for i in range(100)], 0.8, 0.9)
    assert safe.proposed < 0.8 and safe.reason == "explore"
