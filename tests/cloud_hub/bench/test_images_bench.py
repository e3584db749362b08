from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloud_hub.bench import image_streams, images

FINAL = {
    "requests",
    "compute_saved",
    "reuse_share",
    "min_variation_distance",
    "variation_threshold",
    "repeat_returns",
}
TINY = ["--steps-scale", "0.12", "--max-n", "3", "--calibration-prompts", "2", "--no-extras"]


def _last_json(out: str) -> dict[str, object]:
    body = json.loads(out.strip().splitlines()[-1])
    assert isinstance(body, dict)
    return body


def test_krea_stream_is_replayed_in_log_order_with_its_parameters(data_dir: Path) -> None:
    events = image_streams.krea_stream(data_dir / image_streams.KREA)
    assert len(events) > 950
    assert [e.at for e in events] == sorted(e.at for e in events) and events[0].at == 0.0
    assert {e.steps for e in events} >= {50, 150} and max(e.n for e in events) == 9
    assert all(e.prompt and 0 <= e.seed < 2**31 for e in events)
    small = image_streams.scaled(events[0], side_scale=1 / 16, steps_scale=0.1, max_n=2)
    assert (small.width % 16, small.height % 16, small.n, small.steps) == (0, 0, 2, 5)


def test_bench_runs_on_the_krea_stream(
    data_dir: Path, models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert images.main(["--requests", "2", "--out", str(tmp_path), *TINY]) == 0
    body = _last_json(capsys.readouterr().out)
    assert body.keys() >= FINAL
    assert body["requests"] == 2 and body["repeat_returns"] == 0
    assert (
        isinstance(body["compute_saved"], float) and body["compute_saved"] > 0
    )  # grids reuse their first picture
    assert body["min_variation_distance"] is not None
    assert body["min_variation_distance"] >= body["variation_threshold"]  # type: ignore[operator]
    summary = json.loads((tmp_path / "images.json").read_text())
    assert summary["steps_reuse"] < summary["steps_fresh"] and summary["below_threshold"] == 0
    assert summary["quality"]["clip_score"] is None and "not measured" in summary["quality"]["note"]
    assert (tmp_path / "images.png").stat().st_size > 10_000


def test_bench_takes_any_prompt_file_and_video(
    data_dir: Path, models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "p.jsonl"
    rows = [{"Prompt": "a paper boat on a puddle", "n": 2, "steps": 40}, {"Prompt": "a paper boat on a pond"}]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["--prompts", str(prompts), "--video", "--frames", "5", "--out", str(tmp_path), *TINY]
    assert images.main(args) == 0
    body = _last_json(capsys.readouterr().out)
    assert body.keys() >= FINAL and body["bench"] == "images-video" and body["repeat_returns"] == 0
    assert json.loads((tmp_path / "images-video.json").read_text())["returns"] == 3
