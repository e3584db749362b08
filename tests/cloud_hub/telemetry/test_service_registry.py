from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest

from cloud_hub.telemetry.service import HubTelemetry
from shared.telemetry import TelemetryEvent
from shared.wire import TelemetryBatch


def test_ingesting_does_not_grow_the_metrics_registry(tmp_path: Path) -> None:
    # every batch used to register one more collector: /metrics grew without bound, each family
    # repeated once per batch ever received
    hub = HubTelemetry(tmp_path / "events.db")
    try:
        hub.ingest("edge", TelemetryBatch("b0", [TelemetryEvent(event_id="e0").to_attributes()]))
        before = generate_latest(hub.metrics.registry).decode().count("# HELP")
        for i in range(1, 30):
            hub.ingest("edge", TelemetryBatch(f"b{i}", [TelemetryEvent(event_id=f"e{i}").to_attributes()]))
        families = [
            ln.split()[2]
            for ln in generate_latest(hub.metrics.registry).decode().splitlines()
            if ln.startswith("# HELP")
        ]
        assert len(families) == before and len(set(families)) == len(families)
    finally:
        hub.close()
