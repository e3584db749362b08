"""Run one of the project's programs as a child process: started, awaited, stopped for certain.

The demo and the end-to-end tests start ``cloud-hub serve`` and ``edge-agent serve`` exactly as an
operator would. Output goes straight to a log file, never to a pipe, so a chatty program cannot
stall on a full pipe that nobody reads; readiness is the program's own "ready" line in that log.
Each child leads its own process group: the hub's vLLM engine runs in a grandchild, and only a
group-wide kill is sure not to leave it behind holding a port or GPU memory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType


class ChildProcess:
    """A program started with ``start`` and stopped with ``stop``, as often as needed.

    ``start`` returns what follows ``ready_prefix`` on the ready line (an address, usually). Every
    start appends to the same log; ``output`` is what the current run wrote.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        ready_prefix: str,
        env: Mapping[str, str] | None = None,
        grace_s: float = 30.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)  # a list, so a caller can pin a resolved port before a restart
        self.log_path = log_path
        self.ready_prefix = ready_prefix
        self.env = dict(env or {})
        self.grace_s = grace_s
        self.address = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    def start(self, timeout_s: float) -> str:
        """Start the program and wait for its ready line; on failure it is stopped and the log shown."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with self.log_path.open("ab") as out:
            self._proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.address = self.wait_line(self.ready_prefix, timeout_s)
        return self.address

    def wait_line(self, prefix: str, timeout_s: float) -> str:
        """The rest of the first line of this run's output that starts with ``prefix``."""
        deadline = time.monotonic() + timeout_s
        wanted = prefix.encode()
        pending = b""
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            while True:
                alive = self.running  # read before the log, so a last line written on exit is seen
                *lines, pending = (pending + log.read()).split(b"\n")
                for line in lines:
                    if line.startswith(wanted):
                        return line.removeprefix(wanted).decode(errors="replace").strip()
                if not alive or time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
        code = self.stop()
        raise RuntimeError(
            f"{self.name} never printed {prefix!r} (exit {code}, log {self.log_path}):\n"
            + self.output()[-4000:]
        )

    def output(self) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            return log.read().decode(errors="replace")

    @property
    def running(self) -> bool:
        return self._proc is not None and not self._exited(self._proc)

    def stop(self, sig: int = signal.SIGTERM, grace_s: float | None = None) -> int | None:
        """Send ``sig`` to the program, SIGKILL its whole group after ``grace_s``; its exit status.

        Safe to call at any time and any number of times; None when it was never started.
        """
        proc = self._proc
        if proc is None:
            return None
        grace = self.grace_s if grace_s is None else grace_s
        if proc.returncode is None and not self._exited(proc):
            # the leader alone gets the polite signal: it shuts its own children down in order
            _signal_group(proc.pid, sig, leader_only=True)
            deadline = time.monotonic() + grace
            while not self._exited(proc) and time.monotonic() < deadline:
                time.sleep(0.05)
        if proc.returncode is None:
            # Until the leader is reaped its pid, and so the group id, cannot be reused: sweep the
            # group first (a stuck leader, or children it left behind), then reap.
            _signal_group(proc.pid, signal.SIGKILL, leader_only=False)
            proc.wait()
        return proc.returncode

    def kill(self) -> int | None:
        """SIGKILL at once: a crash, with no chance to say goodbye."""
        return self.stop(signal.SIGKILL, grace_s=0)

    @staticmethod
    def _exited(proc: subprocess.Popen[bytes]) -> bool:
        """Whether the leader has exited, leaving it unreaped (WNOWAIT) so its group id stays ours."""
        if proc.returncode is not None:
            return True
        if not hasattr(os, "waitid"):  # macOS before 3.13: poll reaps, so only a stuck leader is swept
            return proc.poll() is not None
        try:
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped elsewhere
            proc.poll()
            return True
        return info is not None

    def __enter__(self) -> ChildProcess:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _signal_group(pid: int, sig: int, *, leader_only: bool) -> None:
    try:
        if leader_only:
            os.kill(pid, sig)
        else:
            os.killpg(pid, sig)
    except ProcessLookupError:
        pass
