from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloud_hub.cli import main
from cloud_hub.evaluation.canary import CanaryController
from cloud_hub.telemetry.store import TelemetryStore, store_path
from tests.cloud_hub.evaluation.conftest import batch, traffic


def test_eval_run_report_export_with_mlflow_and_recalibration(
    tmp_path: Path, gsm8k_answers: list[tuple[str, str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    store = TelemetryStore(store_path(tmp_path))
    events = traffic(gsm8k_answers, "edge_local", 80, 0.5, seed=5, local_confidence=0.9)
    store.ingest("edge", batch(events))
    store.close()
    assert main(["eval", "run", "--home", str(tmp_path), "--target", "math=0.85", "--recalibrate"]) == 0
    run_id = capsys.readouterr().out.strip().splitlines()[-1]
    assert (tmp_path / "eval" / run_id / "report.md").read_text().count("BELOW") == 1
    assert any((tmp_path / "mlruns").rglob("meta.yaml"))
    # half the confident local answers are wrong: the proposal raises the threshold, as a canary
    policy = CanaryController(tmp_path / "policy.json").state
    assert policy.canary_threshold is not None and policy.canary_threshold > policy.threshold

    assert main(["eval", "report", "--home", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["run_id"] == run_id and report["cells"][0]["status"] == "below"
    assert main(["eval", "export", "--home", str(tmp_path), "--out", str(tmp_path / "x")]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["failures"] == len((tmp_path / "x" / "failures.jsonl").read_text().splitlines()) > 0


def test_report_without_runs_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "report", "--home", str(tmp_path)]) == 2
    assert main(["eval", "report", "--home", str(tmp_path), "--run", "nope"]) == 2


def test_bad_target_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["eval", "run", "--home", str(tmp_path), "--target", "math", "--no-mlflow"])


def test_an_uncalibrated_judge_is_refused(tmp_path: Path) -> None:
    assert main(["eval", "run", "--home", str(tmp_path), "--judge", "qwen2.5-coder-0.5b-instruct"]) == 2


def test_stats_aggregates_by_route_and_window(
    tmp_path: Path, gsm8k_answers: list[tuple[str, str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    store = TelemetryStore(store_path(tmp_path))
    store.ingest("edge", batch(traffic(gsm8k_answers, "edge_local", 6, 0.0, seed=1, latency_s=0.5)))
    store.ingest("edge", batch(traffic(gsm8k_answers, "hub_oss", 4, 0.0, seed=2, fallback=True), "b2"))
    store.close()
    assert main(["eval", "stats", "--home", str(tmp_path), "--by", "route,domain", "--json"]) == 0
    rows = {r["route"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["edge_local"]["requests"] == 6 and rows["edge_local"]["latency_p50_s"] == 0.5
    assert rows["hub_oss"]["fallback_rate"] == 1.0 and rows["hub_oss"]["domain"] == "math"
    assert main(["eval", "stats", "--home", str(tmp_path), "--by", "", "--window", "3600"]) == 0
    assert "telemetry by all" in capsys.readouterr().out
    assert main(["eval", "stats", "--home", str(tmp_path), "--by", "colour"]) == 2


def test_eval_run_prints_the_report_unwrapped(
    tmp_path: Path, gsm8k_answers: list[tuple[str, str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    store = TelemetryStore(store_path(tmp_path))
    store.ingest("edge", batch(traffic(gsm8k_answers, "semantic_cache", 30, 0.5, seed=3)))
    store.close()
    assert main(["eval", "run", "--home", str(tmp_path), "--no-mlflow", "--min-n", "1"]) == 0
    captured = capsys.readouterr()
    run_id = captured.out.strip().splitlines()[-1]
    report = (tmp_path / "eval" / run_id / "report.md").read_text().strip().splitlines()
    assert max(map(len, report)) > 80  # a table row wider than a piped terminal
    printed = captured.err.splitlines()
    for line in report:
        assert line in printed  # each row on one line, brackets and all
