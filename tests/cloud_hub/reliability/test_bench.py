"""``cloud-hub bench reliability``: each scenario in a child process, a table and a JSON report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cloud_hub.bench import cli
from cloud_hub.bench.reliability import add_arguments, run
from cloud_hub.reliability import SCENARIOS as HUB
from edge_agent.reliability import SCENARIOS as EDGE
from shared.reliability import CATALOGUE, NOT_COVERED


def test_every_catalogue_entry_has_exactly_one_scenario_on_its_side() -> None:
    for entry in CATALOGUE:
        side, other = (EDGE, HUB) if entry.program == "edge" else (HUB, EDGE)
        assert entry.id in side and entry.id not in other, entry
    assert set(EDGE) | set(HUB) == {e.id for e in CATALOGUE}
    assert not set(NOT_COVERED) & {e.id for e in CATALOGUE}


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_the_bench_is_registered() -> None:
    assert ("reliability", "cloud_hub.bench.reliability") in cli.BENCHES


def test_the_bench_writes_its_figures_and_counts(tmp_path: Path) -> None:
    args = _args("--quick", "--only", "T16,T4", "--out", str(tmp_path))
    assert run(args) == 0
    report = json.loads((tmp_path / "reliability.json").read_text())
    assert report["passed"] == 2 and report["failed"] == 0 and report["size"] == "quick"
    tests = {t["id"]: t for t in report["tests"]}
    assert set(tests) == {"T4", "T16"}
    assert tests["T16"]["passed"] is True and tests["T16"]["figures"]["pickle_sites"] == 0
    assert (tmp_path / "reliability-logs" / "T4.log").is_file()


def test_an_unknown_id_is_refused(tmp_path: Path) -> None:
    assert run(_args("--only", "T99", "--out", str(tmp_path))) == 2
