"""Run untrusted model-written code against its tests in a constrained child process.

Layers, each independent of the others: a fresh temporary directory as cwd and ``HOME``; an
isolated interpreter (``-I``: no site-packages of ours, no environment-controlled imports); hard
``setrlimit`` caps on CPU seconds, address space, file size, open files and processes; a wall
clock kill; no network: a new, empty network namespace via ``unshare -rn`` where the kernel allows
unprivileged user namespaces, and always an audit hook that refuses sockets, subprocesses and
``os.system`` before the candidate's first line runs (audit hooks cannot be removed from Python).
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Status = Literal["passed", "failed", "timeout", "memory", "blocked"]

_PRELUDE = r"""
import sys
_BLOCKED = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.fork", "os.kill",
            "ctypes.", "shutil.rmtree")
def _guard(event, args):
    if event.startswith(_BLOCKED):
        raise PermissionError(f"sandbox: {event} is not allowed")
sys.addaudithook(_guard)
del _guard
src = open("candidate.py", encoding="utf-8").read()
try:
    exec(compile(src, "candidate.py", "exec"), {"__name__": "__main__"})
except MemoryError:
    sys.stderr.write("MemoryError\n")
    sys.exit(3)
except PermissionError as exc:
    if str(exc).startswith("sandbox:"):
        sys.stderr.write(str(exc) + "\n")
        sys.exit(4)
    raise
"""


@dataclass(frozen=True, slots=True)
class SandboxResult:
    status: Status
    returncode: int
    stdout_tail: str
    stderr_tail: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@functools.cache
def _netns_prefix() -> tuple[str, ...]:
    """``unshare -rn`` when it works on this kernel; else () and the audit hook stands alone."""
    exe = shutil.which("unshare")
    if exe is None:
        return ()
    try:
        ok = subprocess.run([exe, "-rn", "true"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return (exe, "-rn") if ok else ()


class CodeSandbox:
    def __init__(
        self,
        cpu_s: int = 5,
        wall_s: float = 10.0,
        memory_mb: int = 512,
        max_file_mb: int = 10,
        isolate_network: bool = True,
    ) -> None:
        self.cpu_s = cpu_s
        self.wall_s = wall_s
        self.memory_bytes = memory_mb * 1024 * 1024
        self.file_bytes = max_file_mb * 1024 * 1024
        self.isolate_network = isolate_network

    def _limits(self) -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_s, self.cpu_s))
        resource.setrlimit(resource.RLIMIT_AS, (self.memory_bytes, self.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_bytes, self.file_bytes))
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.setsid()  # its own process group, so a timeout kills everything it started

    def run(self, code: str) -> SandboxResult:
        import time

        with tempfile.TemporaryDirectory(prefix="edgeroute-sandbox-") as tmp:
            work = Path(tmp)
            (work / "candidate.py").write_text(code, encoding="utf-8")
            (work / "prelude.py").write_text(_PRELUDE, encoding="utf-8")
            prefix = _netns_prefix() if self.isolate_network else ()
            cmd = [*prefix, sys.executable, "-I", "-S", "-B", "prelude.py"]
            env = {"HOME": tmp, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
            start = time.monotonic()
            proc = subprocess.Popen(
                cmd,
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=self._limits,
            )
            try:
                out, err = proc.communicate(timeout=self.wall_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                out, err = proc.communicate()
                timed_out = True
            seconds = time.monotonic() - start
        stderr = err.decode("utf-8", "replace")
        rc = proc.returncode
        status: Status
        if timed_out or rc in (-9, -24) or rc == 137:  # SIGKILL by us, or SIGXCPU at the CPU cap
            status = "timeout"
        elif rc == 3 or "MemoryError" in stderr[-2000:]:
            status = "memory"
        elif rc == 4:
            status = "blocked"
        else:
            status = "passed" if rc == 0 else "failed"
        return SandboxResult(status, rc, out.decode("utf-8", "replace")[-2000:], stderr[-2000:], seconds)
