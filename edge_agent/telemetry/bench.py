"""``python -m edge_agent.telemetry.bench``: what telemetry costs on the request path.

Prints per-event cost of ``TelemetryRecorder.record`` (metrics, regeneration check, durable spool
write) against the baseline of only building the event, and the spool's drain rate (lease + ack).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from edge_agent.telemetry.recorder import TelemetryRecorder
from edge_agent.telemetry.spool import TelemetrySpool
from shared.telemetry import TelemetryEvent


def _event(i: int) -> TelemetryEvent:
    return TelemetryEvent(
        response_id=f"r{i}", route="edge_local", request_model="qwen", input_tokens=40, output_tokens=120,
        latency_s=0.8, ttft_s=0.05, local_confidence=0.9, cost_usd=1e-6, tenant="t", user=f"u{i % 50}",
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    args = parser.parse_args(argv)
    n: int = args.events
    console = Console()
    with tempfile.TemporaryDirectory() as tmp, Progress(console=console) as progress:
        recorder = TelemetryRecorder(TelemetrySpool(Path(tmp) / "spool.db"))
        task = progress.add_task("record", total=2 * n)
        base: list[float] = []
        for i in range(n):
            t = time.perf_counter()
            _event(i)
            base.append(time.perf_counter() - t)
            progress.advance(task)
        rec: list[float] = []
        for i in range(n):
            event = _event(i)
            t = time.perf_counter()
            recorder.record(event, prompt=f"question number {i % 200} about spiders")
            rec.append(time.perf_counter() - t)
            progress.advance(task)
        t = time.perf_counter()
        drained = 0
        while (lease := recorder.spool.lease(max_events=256)) is not None:
            drained += recorder.spool.ack(lease.batch_id)
        drain_s = time.perf_counter() - t
        recorder.close()
    table = Table(title=f"telemetry overhead ({n} events)")
    for col in ("measure", "p50 µs", "p99 µs", "ratio p50 vs baseline"):
        table.add_column(col)
    b50 = statistics.median(base)
    for name, xs in (("build event (baseline)", base), ("record (metrics+regen+spool)", rec)):
        xs = sorted(xs)
        p50, p99 = xs[len(xs) // 2], xs[int(len(xs) * 0.99)]
        table.add_row(name, f"{p50 * 1e6:.1f}", f"{p99 * 1e6:.1f}", f"{p50 / b50:.1f}×")
    console.print(table)
    console.print(f"spool drain (lease+ack, 256/batch): {drained / drain_s:,.0f} events/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
