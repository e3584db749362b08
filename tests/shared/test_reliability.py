"""The reliability catalogue's common parts: gates, controls, measurements and the runner."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from shared.reliability import (
    Report,
    Result,
    Size,
    listening_addresses,
    main,
    percentile,
    pick,
    scan_for,
)


def test_a_failed_gate_or_control_fails_the_report() -> None:
    r = Report("T0", "demo")
    r.figure(x=1, y=2.123456)
    assert r.require(True, "never shown")
    assert r.result().passed
    r.control(False, "the gate")
    out = r.result()
    assert not out.passed and "the gate" in out.failures[0] and out.figures == {"x": 1, "y": 2.1235}
    assert Result.from_json(json.loads(json.dumps(out.to_json()))) == out


def test_sizes_pick_their_value() -> None:
    assert [pick(s, 1, 2, 3) for s in Size] == [1, 2, 3]


def test_percentile_is_nearest_rank() -> None:
    assert percentile([5, 1, 3, 2, 4], 50) == 3
    assert percentile([1, 2, 3, 4], 99) == 4
    assert percentile([], 50) != percentile([], 50)  # NaN


def test_scan_counts_every_occurrence_in_every_file(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text("sk-1 sk-1")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.db").write_bytes(b"\x00sk-1\x00")
    assert scan_for(["sk-1", "nope"], [tmp_path]) == {"sk-1": 3, "nope": 0}


def test_listening_addresses_sees_this_process_sockets() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert ("127.0.0.1", s.getsockname()[1]) in listening_addresses(os.getpid())


def sample(size: Size, work: Path) -> Result:
    r = Report("T0", f"sample at {size.value}")
    r.figure(work_exists=work.is_dir())
    return r.result()


def test_main_runs_one_scenario_and_writes_its_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = {"T0": "tests.shared.test_reliability:sample"}
    out = tmp_path / "r.json"
    assert main(table, ["run", "T0", "--size", "quick", "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["passed"] and got["name"] == "sample at quick" and got["figures"]["work_exists"]
    assert main(table, ["run", "T9"]) == 2
    assert main(table, ["list"]) == 0 and "T0" in capsys.readouterr().out
