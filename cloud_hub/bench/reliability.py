"""``cloud-hub bench reliability``: the reliability catalogue at full size, with its figures.

Every scenario of ``shared.reliability.CATALOGUE`` runs in a child process of its own (``python -m
edge_agent.reliability run ID`` or ``cloud_hub.reliability``), so a crash or a leak in one cannot
spoil the next, and the hub never imports the edge's code. The default sizes are the catalogue's
(20 kill rounds, a 60 s outage, a million fuzzed frames, five minutes of chaos and load: about an
hour); ``--quick`` shortens every scenario so the whole run fits in 15 minutes on two cores. The
table and ``reliability.json`` (under ``--out``) hold each test's pass/fail and figures, so runs
of two versions can be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared.reliability import CATALOGUE, NOT_COVERED, Entry, Result, Size

HELP = "the reliability catalogue (crash, outage, overload, hostile peers and input) with figures"
# per scenario, generous: a scenario that overruns is a failure, not a hang of the whole run
_TIMEOUT_S = {Size.QUICK: 300, Size.FULL: 1800}
_PACKAGES = {"edge": "edge_agent.reliability", "hub": "cloud_hub.reliability"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="every scenario shortened: <= 15 min on 2 cores")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="where reliability.json goes")
    parser.add_argument("--only", default="", help="comma-separated catalogue ids (default: all)")


def run_one(entry: Entry, size: Size, logs: Path, timeout_s: float) -> Result:
    """One scenario in a child process; a crash, a timeout or no result is a failed test."""
    with tempfile.TemporaryDirectory(prefix=f"rel-{entry.id}-") as scratch:
        out = Path(scratch) / "result.json"
        argv = [sys.executable, "-m", _PACKAGES[entry.program], "run", entry.id, "--size", size.value]
        argv += ["--work", str(Path(scratch) / "work"), "--out", str(out)]
        log = logs / f"{entry.id}.log"
        started = time.monotonic()
        with log.open("wb") as sink:
            try:
                code = subprocess.run(
                    argv, stdout=sink, stderr=subprocess.STDOUT, timeout=timeout_s, check=False
                ).returncode
            except subprocess.TimeoutExpired:
                code = None
        seconds = round(time.monotonic() - started, 2)
        if out.is_file():
            result = Result.from_json(json.loads(out.read_text()))
            result.seconds = seconds
            return result
    why = f"timed out after {timeout_s:.0f} s" if code is None else f"exited {code} without a result"
    return Result(entry.id, entry.name, False, {}, [f"{why}; see {log}"], seconds)


def _figures(result: Result) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in result.figures.items())


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(results: list[Result], size: Size) -> Table:
    t = Table(title=f"edgeroute reliability ({size.value})", show_lines=True)
    t.add_column("id", no_wrap=True)
    t.add_column("test")
    t.add_column("result", no_wrap=True)
    t.add_column("s", justify="right", no_wrap=True)
    t.add_column("figures")
    for r in results:
        verdict = "[green]pass[/]" if r.passed else "[red]FAIL[/]"
        detail = _figures(r) + ("\n[red]" + "; ".join(r.failures) + "[/]" if r.failures else "")
        t.add_row(r.id, r.name, verdict, f"{r.seconds:.0f}", detail)
    return t


def run(args: argparse.Namespace) -> int:
    size = Size.QUICK if args.quick else Size.FULL
    wanted = {s.strip().upper() for s in args.only.split(",") if s.strip()}
    entries = [e for e in CATALOGUE if not wanted or e.id in wanted]
    unknown = wanted - {e.id for e in CATALOGUE}
    # a log or a pipe gets the whole table, not 80 columns of it
    console = Console() if sys.stdout.isatty() else Console(width=170)
    if unknown:
        console.print(f"[red]not in the catalogue: {', '.join(sorted(unknown))}[/]")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / "reliability-logs"
    logs.mkdir(exist_ok=True)
    results: list[Result] = []
    started = time.time()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("reliability", total=len(entries))
        for entry in entries:
            progress.update(task, description=f"{entry.id} {entry.name}")
            result = run_one(entry, size, logs, _TIMEOUT_S[size])
            results.append(result)
            mark = "[green]pass[/]" if result.passed else "[red]FAIL[/]"
            progress.console.print(f"{mark} {entry.id} {entry.name} ({result.seconds:.0f} s)")
            progress.advance(task)
    console.print(table(results, size))
    passed = sum(r.passed for r in results)
    report = {
        "size": size.value,
        "started": started,
        "seconds": round(time.time() - started, 1),
        "host": {"cpus": _cpus(), "python": platform.python_version(), "platform": platform.platform()},
        "tests": [r.to_json() for r in results],
        "passed": passed,
        "failed": len(results) - passed,
        "not_covered": dict(NOT_COVERED),
    }
    path = args.out / "reliability.json"
    path.write_text(json.dumps(report, indent=2))
    console.print(
        f"{passed} passed, {len(results) - passed} failed in {report['seconds']:.0f} s; wrote {path}"
    )
    return 0 if passed == len(results) else 1


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0
