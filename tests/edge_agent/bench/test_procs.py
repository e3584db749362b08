from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from edge_agent.bench import procs

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads Linux's /proc")


def test_a_child_is_found_settles_when_idle_and_reads_none_once_gone() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert sleeper.pid in procs.children(os.getpid())
        _, kids = procs.cpu(os.getpid())
        assert kids >= 0 and procs.cpu_ticks(sleeper.pid) is not None
        began = time.monotonic()
        procs.settle(sleeper.pid, timeout_s=10)  # an idle process is quiet at once
        assert time.monotonic() - began < 5
    finally:
        sleeper.kill()
        sleeper.wait()
    assert procs.cpu_ticks(sleeper.pid) is None


def test_a_busy_loop_shows_up_in_its_own_ticks() -> None:
    before = procs.cpu_ticks(os.getpid())
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    after = procs.cpu_ticks(os.getpid())
    assert before is not None and after is not None
    assert (after - before) / procs.hz() >= 0.2


def test_steal_is_read_and_turned_into_cores() -> None:
    ticks = procs.steal_ticks()
    assert ticks is None or ticks >= 0
    assert procs.steal_cores(100, 100 + procs.hz(), 2.0) == 0.5
    assert procs.steal_cores(None, 5, 1.0) is None and procs.steal_cores(1, 5, 0.0) is None


def test_free_port_can_be_bound() -> None:
    port = procs.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
