"""``python -m cloud_hub.telemetry.bench``: hub ingest throughput, fresh and re-sent batches.

A re-sent batch (lost ack) must cost about what a fresh one does: the baseline is the fresh run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from cloud_hub.telemetry.metrics import HubTelemetryMetrics
from cloud_hub.telemetry.store import TelemetryStore
from shared.telemetry import TelemetryEvent
from shared.wire import TelemetryBatch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    console = Console()
    batches = [
        TelemetryBatch(
            f"b{b}",
            [
                TelemetryEvent(
                    route="hub_oss", request_model="qwen", latency_s=1.0, cost_usd=1e-4
                ).to_attributes()
                for _ in range(args.batch_size)
            ],
        )
        for b in range(args.batches)
    ]
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, Progress(console=console) as progress:
        store = TelemetryStore(Path(tmp) / "hub.db", observer=HubTelemetryMetrics())
        for label in ("fresh", "re-sent"):
            task = progress.add_task(label, total=len(batches))
            t = time.perf_counter()
            for batch in batches:
                store.ingest("edge", batch)
                progress.advance(task)
            rates[label] = len(batches) * args.batch_size / (time.perf_counter() - t)
        stored = store.count()
        store.close()
    console.print(f"stored {stored} events (expected {len(batches) * args.batch_size})")
    for label, rate in rates.items():
        console.print(f"{label:>8}: {rate:,.0f} events/s ({rate / rates['fresh']:.2f}× fresh)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
