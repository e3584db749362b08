"""The process launcher with real child processes: small Python programs that behave as the
hub and the agent do (a ready line, a clean SIGTERM) or as they must never be allowed to (a
deaf leader, a grandchild left behind)."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from shared.procs import ChildProcess

POLITE = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: (print("stopped", flush=True), sys.exit(0)))
print("warming up")
print("ready on", sys.argv[1], flush=True)
while True:
    time.sleep(0.05)
"""

DEAF = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready on now", flush=True)
while True:
    time.sleep(0.05)
"""

# the leader exits on SIGTERM but leaves a grandchild that ignores it, as a careless server would
ABANDONS = """
import signal, subprocess, sys
code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
grandchild = subprocess.Popen([sys.executable, "-c", code])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("ready on", grandchild.pid, flush=True)
signal.pause()
"""


def _child(tmp_path: Path, script: str, *args: str, grace_s: float = 10.0) -> ChildProcess:
    argv = [sys.executable, "-c", script, *args]
    return ChildProcess("toy", argv, tmp_path / "logs" / "toy.log", ready_prefix="ready on ", grace_s=grace_s)


def _alive(pid: int) -> bool:
    """Alive and not a zombie: a killed orphan may wait a while for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_start_returns_the_ready_address_and_sigterm_stops_cleanly(tmp_path: Path) -> None:
    with _child(tmp_path, POLITE, "tcp://127.0.0.1:5555") as proc:
        assert proc.start(timeout_s=30) == "tcp://127.0.0.1:5555"
        assert proc.address == "tcp://127.0.0.1:5555" and proc.running
        assert proc.stop() == 0
        assert not proc.running
        assert proc.output().splitlines() == ["warming up", "ready on tcp://127.0.0.1:5555", "stopped"]
        assert proc.stop() == 0 and proc.kill() == 0  # idempotent: the first exit status stands


def test_a_restart_appends_to_the_log_and_reads_only_its_own_run(tmp_path: Path) -> None:
    proc = _child(tmp_path, POLITE, "first")
    try:
        proc.start(timeout_s=30)
        proc.stop()
        proc.argv[-1] = "second"
        assert proc.start(timeout_s=30) == "second"
        assert "first" not in proc.output()
        log = proc.log_path.read_text()
        assert log.index("ready on first") < log.index("ready on second")
    finally:
        proc.stop()


def test_a_deaf_program_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    proc = _child(tmp_path, DEAF, grace_s=0.5)
    proc.start(timeout_s=30)
    started = time.monotonic()
    assert proc.stop() == -signal.SIGKILL
    assert 0.5 <= time.monotonic() - started < 10


def test_kill_is_immediate(tmp_path: Path) -> None:
    proc = _child(tmp_path, POLITE, "x")
    proc.start(timeout_s=30)
    assert proc.kill() == -signal.SIGKILL
    assert "stopped" not in proc.output()  # no handler ran: a crash, not a shutdown


def test_stop_sweeps_what_the_program_left_in_its_group(tmp_path: Path) -> None:
    proc = _child(tmp_path, ABANDONS)
    grandchild = int(proc.start(timeout_s=30))
    assert _alive(grandchild)
    assert proc.stop() == 0  # the leader itself shut down cleanly
    deadline = time.monotonic() + 10
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def test_a_program_that_dies_before_ready_reports_its_log(tmp_path: Path) -> None:
    proc = _child(tmp_path, "import sys; print('bad config: no models'); sys.exit(3)")
    with pytest.raises(RuntimeError, match=r"(?s)exit 3.*bad config: no models"):
        proc.start(timeout_s=30)
    assert not proc.running


def test_a_program_that_never_gets_ready_is_stopped(tmp_path: Path) -> None:
    proc = _child(tmp_path, POLITE.replace('print("ready on", sys.argv[1], flush=True)', "pass"))
    with pytest.raises(RuntimeError, match="never printed 'ready on '"):
        proc.start(timeout_s=0.5)
    code = proc.stop()
    assert not proc.running and code is not None and proc.stop() == code


def test_a_later_line_is_found_in_the_same_run(tmp_path: Path) -> None:
    script = POLITE.replace('print("warming up")', 'print("cache on tcp://x:1")')
    with _child(tmp_path, script, "y") as proc:
        proc.start(timeout_s=30)
        assert proc.wait_line("cache on ", timeout_s=1) == "tcp://x:1"


def test_stop_before_start_is_a_no_op(tmp_path: Path) -> None:
    proc = _child(tmp_path, POLITE)
    assert proc.stop() is None and proc.kill() is None and not proc.running
