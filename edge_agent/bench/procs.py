"""What the benchmarks read about the processes they start, from Linux's ``/proc``: CPU used by
a process and by its children, whether it has gone quiet, and the host's steal time.

Steal is the time the hypervisor ran someone else on this machine's virtual CPUs. On a shared
2-vCPU host it swung between 0.01 and 0.5 of a core from one four-second run to the next, which
moved an exact-hit run between 1,000 and 1,600 req/s with the same code: a figure is only
comparable with its own steal beside it.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path


def hz() -> int:
    """Clock ticks per second, the unit of every ``/proc`` CPU figure."""
    return int(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100


def cpu_ticks(pid: int) -> int | None:
    """User + system ticks of ``pid`` so far; None once it is gone (or off Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])


def children(pid: int) -> list[int]:
    """Child processes of ``pid`` (the agent's spare-CPU embedder)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                out.append(int(entry.name))
    return out


def cpu(pid: int) -> tuple[int, int]:
    """CPU ticks so far of ``pid`` itself and of its child processes."""
    own = cpu_ticks(pid) or 0
    return own, sum(cpu_ticks(c) or 0 for c in children(pid))


def steal_ticks() -> int | None:
    """The host's steal ticks so far, over all CPUs; None where ``/proc/stat`` has none."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    return int(first[8]) if first[0] == "cpu" and len(first) > 8 else None


def steal_cores(before: int | None, after: int | None, seconds: float) -> float | None:
    """Cores' worth of steal between two ``steal_ticks`` readings ``seconds`` apart."""
    if before is None or after is None or seconds <= 0:
        return None
    return round((after - before) / hz() / seconds, 3)


def settle(pid: int, timeout_s: float = 60.0) -> None:
    """Wait until process ``pid`` uses under 5% of a core (Linux; elsewhere a fixed pause)."""
    end = time.monotonic() + timeout_s
    quiet = 0
    last: int | None = sum(cpu(pid)) if cpu_ticks(pid) is not None else None
    while time.monotonic() < end and quiet < 2:
        time.sleep(0.25)
        now = sum(cpu(pid)) if cpu_ticks(pid) is not None else None
        if last is None or now is None:
            time.sleep(2.0)
            return
        quiet = quiet + 1 if (now - last) / hz() < 0.05 * 0.25 else 0
        last = now


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
