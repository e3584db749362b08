from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloud_hub.bench import routing

REQUIRED = {"dataset", "strong_model", "apgr", "aiq", "points"}
POINT_FIELDS = {"target", "quality_ratio", "strong_call_share", "cost_ratio"}


def _last_json(out: str) -> dict[str, object]:
    line = out.strip().splitlines()[-1]
    body = json.loads(line)
    assert isinstance(body, dict)
    return body


def _check(body: dict[str, object]) -> None:
    assert body.keys() >= REQUIRED
    points = body["points"]
    assert isinstance(points, list)
    assert [p["target"] for p in points] == [0.8, 0.9, 0.95, 1.0]
    for p in points:
        assert p.keys() >= POINT_FIELDS
        assert 0.0 <= p["strong_call_share"] <= 1.0
        assert p["quality_ratio"] > 0 and p["cost_ratio"] > 0
    assert isinstance(body["apgr"], float) and isinstance(body["aiq"], float)


@pytest.mark.slow
def test_gsm8k_slice_prints_final_json(
    data_dir: Path, models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gsm = data_dir / "routing/routellm/routellm/evals/gsm8k/gsm8k_responses.csv"
    args = ["--dataset", str(gsm), "--limit", "160", "--out", str(tmp_path / "out")]
    args += ["--embedding-cache", str(tmp_path / "emb.npz"), "--thresholds-out", str(tmp_path / "thr.json")]
    assert routing.main(args) == 0
    body = _last_json(capsys.readouterr().out)
    _check(body)
    assert body["strong_model"] == "gpt-4-1106-preview"
    assert body["router"] == "edgeroute_cascade"  # GSM8K records the weak model's answers
    summary = json.loads((tmp_path / "out/routing-gsm8k_responses.json").read_text())
    baselines = {"random", "always_weak", "always_strong", "oracle", "knn", "edgeroute"}
    assert baselines <= summary["routers"].keys()
    oracle = summary["routers"]["oracle"]["points"][2]
    assert oracle["quality_ratio"] >= 0.95 - 1e-9  # the oracle always reaches its target
    assert (tmp_path / "out/routing-gsm8k_responses.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "thr-gsm8k_responses.json").read_text())["version"] == 1


@pytest.mark.slow
def test_train_on_one_file_evaluate_another(
    data_dir: Path, models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rb = data_dir / "routing/routerbench"
    args = ["--train", str(rb / "mbpp_train.csv"), "--dataset", str(rb / "winograde_train.csv")]
    args += ["--limit", "150", "--out", str(tmp_path), "--no-plots"]
    args += ["--embedding-cache", str(tmp_path / "e.npz")]
    assert routing.main(args) == 0
    body = _last_json(capsys.readouterr().out)
    _check(body)
    assert body["dataset"] == "winograde_train"
    summary = json.loads((tmp_path / "routing-winograde_train.json").read_text())
    assert summary["rows_evaluated"] == 150  # every --dataset row is evaluated when --train is given


def test_bad_dataset_path_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no such file"):
        args = ["--dataset", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "out")]
        routing.main([*args, "--embedding-cache", str(tmp_path / "e.npz")])


def test_registered_in_the_hub_cli() -> None:
    from cloud_hub.cli import build_parser

    args = build_parser().parse_args(["bench", "routing", "--limit", "5", "--no-plots"])
    assert args.limit == 5 and args.no_plots and args._bench_run is routing.run
