"""Each demo run starts from nothing: an earlier run's caches never answer this run's questions."""

from __future__ import annotations

from pathlib import Path

from cloud_hub.demo.deploy import STATE_DIRS, fresh_state


def test_an_earlier_runs_state_is_removed_and_nothing_else(tmp_path: Path) -> None:
    for name in STATE_DIRS:
        (tmp_path / name / "keys").mkdir(parents=True)
        (tmp_path / name / "cache.db").write_bytes(b"an earlier run's answers")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("kept")
    (tmp_path / "records.jsonl").write_text("{}\n")  # the last run's records stay until rewritten
    fresh_state(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "records.jsonl"]
    assert (tmp_path / "mine" / "notes.txt").read_text() == "kept"
    fresh_state(tmp_path / "never-made")  # a first run: nothing to remove
