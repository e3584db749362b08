"""At-least-once delivery over a real CURVE link, with the hub down for part of the traffic."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_hub.telemetry.store import TelemetryStore
from edge_agent.telemetry.delivery import TelemetryDeliverer
from edge_agent.telemetry.metrics import EdgeMetrics
from edge_agent.telemetry.recorder import TelemetryRecorder
from edge_agent.telemetry.spool import TelemetrySpool
from shared.telemetry import TelemetryEvent
from tests.edge_agent.telemetry.curve_link import CurveEdgeTransport, CurveHub, make_keys

OUTAGE_S = 3.0  # stands in for the one-minute outage; the code path does not depend on its length


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def link(tmp_path: Path) -> Iterator[tuple[CurveHub, CurveEdgeTransport, TelemetryStore]]:
    hub_secret, edge_secret, allowed = make_keys(tmp_path / "keys")
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    store = TelemetryStore(tmp_path / "hub.db")
    hub = CurveHub(endpoint, hub_secret, allowed, store)
    transport = CurveEdgeTransport(endpoint, edge_secret, hub_secret.with_suffix(".key"))
    try:
        yield hub, transport, store
    finally:  # a test that fails half-way still leaves no socket or database open
        hub.stop()
        transport.close()
        store.close()


async def test_hub_outage_under_traffic_delivers_everything_exactly_once(
    tmp_path: Path, link: tuple[CurveHub, CurveEdgeTransport, TelemetryStore]
) -> None:
    hub, transport, store = link
    metrics = EdgeMetrics()
    recorder = TelemetryRecorder(TelemetrySpool(tmp_path / "spool.db"), metrics)
    deliverer = TelemetryDeliverer(
        recorder.spool, transport, metrics, interval_s=0.05, timeout_s=0.5, max_events=50, max_backoff_s=0.5
    )
    hub.start()
    hub.lose_acks = 2  # the hub commits two batches but the edge never hears back: they are re-sent
    deliverer.start()
    sent: set[str] = set()
    worst_record_s = 0.0

    async def traffic(seconds: float) -> None:
        nonlocal worst_record_s
        end = time.monotonic() + seconds
        i = len(sent)
        while time.monotonic() < end:
            t = time.perf_counter()
            ev = recorder.record(TelemetryEvent(route="edge_local", response_id=f"r{i}", latency_s=0.01))
            worst_record_s = max(worst_record_s, time.perf_counter() - t)
            sent.add(ev.event_id)
            i += 1
            await asyncio.sleep(0.005)

    await traffic(1.0)
    hub.stop()
    await traffic(OUTAGE_S)
    assert recorder.spool.stats().pending_events > 0  # the outage backed events up at the edge
    hub.start()
    await traffic(1.0)
    await recorder.drain()  # the last events may still wait for their batch's commit
    assert await deliverer.drain(deadline_s=20)
    await deliverer.close()
    hub.stop()

    stored = {ev.event_id for _, ev in store.events()}
    assert stored == sent
    assert store.count("request") == len(sent)  # duplicates from lost acks were not stored twice
    assert hub.batches > 0
    assert next(iter(metrics.delivery_failures.collect())).samples  # the outage was noticed and retried
    assert worst_record_s < 0.5  # recording never waited for the hub
    assert recorder.spool.stats().dropped_events == 0
    [(edge_id, _)] = {(e, 0) for e, _ in store.events()}
    assert len(edge_id) == 40  # the authenticated CURVE key, not anything from the payload
    transport.close()
    recorder.close()
    store.close()


async def test_spool_drops_are_reported_to_the_hub(
    tmp_path: Path, link: tuple[CurveHub, CurveEdgeTransport, TelemetryStore]
) -> None:
    hub, transport, store = link
    spool = TelemetrySpool(tmp_path / "spool.db", max_bytes=3000)
    for i in range(50):
        spool.append(TelemetryEvent(event_id=f"e{i}", completion="x" * 100))
    dropped = spool.stats().dropped_events
    assert dropped > 0
    hub.start()
    deliverer = TelemetryDeliverer(spool, transport, timeout_s=2.0)
    assert await deliverer.drain(deadline_s=20)
    hub.stop()
    # reporting can itself evict an old event at a full spool; the hub ends with the final count
    final = spool.stats().dropped_events
    assert final >= dropped
    assert list(store.drops().values()) == [final]
    transport.close()
    spool.close()
    store.close()
