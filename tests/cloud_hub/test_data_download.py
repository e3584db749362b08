from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from cloud_hub import data_download


def _module() -> ModuleType:
    return data_download


def test_manifest_matches_the_shared_data_folder(data_dir: Path) -> None:
    dl = _module()
    targets = {i.target for i in dl.manifest()}
    assert len(targets) == len(dl.manifest())  # no duplicates
    for t in targets:
        assert (data_dir / t).is_file(), t
    derived_prefixes = ("routing/routellm/routellm_mmlu_with_gold.csv", "text_eval/mmlu/", "paraphrase/qqp/")
    present = {
        str(p.relative_to(data_dir))
        for p in data_dir.rglob("*")
        if p.is_file()
        and p.name != "README.md"
        and not str(p.relative_to(data_dir)).startswith(derived_prefixes)
    }
    present = {p for p in present if not p.startswith("paraphrase/mrpc/README") and "LICEN" not in p}
    assert present <= targets, sorted(present - targets)
    for item in dl.manifest():
        assert item.url.startswith("https://github.com/")


def test_dry_run_lists_without_network(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dl = _module()
    assert dl.main(["download", str(tmp_path), "--dry-run", "--only", "routing/routerbench/"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    fetch = [line.split("\t") for line in lines if line.startswith("fetch")]
    assert [f[1] for f in fetch] == [
        f"routing/routerbench/{n}_train.csv" for n in ("arc_challenge", "mbpp", "winograde")
    ]
    assert all("RouterDC/raw/0e63989c/datasets/routerbench_zs/" in f[2] for f in fetch)
    assert any(line.startswith("derived") for line in lines)
    assert not any(tmp_path.iterdir())  # nothing written
