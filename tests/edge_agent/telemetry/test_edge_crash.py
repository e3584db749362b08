"""kill -9 of the edge while a batch waits for its ack: nothing is lost, nothing is counted twice."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

from cloud_hub.telemetry.metrics import HubTelemetryMetrics
from cloud_hub.telemetry.store import TelemetryStore
from edge_agent.telemetry.delivery import TelemetryDeliverer
from edge_agent.telemetry.spool import TelemetrySpool
from shared.paths import REPO_ROOT
from tests.edge_agent.telemetry.curve_link import CurveEdgeTransport, CurveHub, make_keys
from tests.edge_agent.telemetry.test_delivery import _free_port

EDGE = """
import asyncio
from pathlib import Path
from edge_agent.telemetry.delivery import TelemetryDeliverer
from edge_agent.telemetry.spool import TelemetrySpool
from shared.telemetry import TelemetryEvent
from tests.edge_agent.telemetry.curve_link import CurveEdgeTransport

spool = TelemetrySpool(Path({spool!r}))
for i in range(500):
    spool.append(TelemetryEvent(event_id=f"e{{i:04d}}", route="edge_local"))
transport = CurveEdgeTransport({endpoint!r}, Path({secret!r}), Path({hub_public!r}))
deliverer = TelemetryDeliverer(spool, transport, timeout_s=60, max_events=50)

async def main() -> None:
    for _ in range(3):
        assert await deliverer.deliver_once() == 50
    print("acked", flush=True)
    await deliverer.deliver_once()  # the hub stores this batch but its ack never comes

asyncio.run(main())
"""


async def test_kill_9_mid_batch_then_restart_delivers_each_event_once(tmp_path: Path) -> None:
    hub_secret, edge_secret, allowed = make_keys(tmp_path / "keys")
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    metrics = HubTelemetryMetrics()
    store = TelemetryStore(tmp_path / "hub.db", observer=metrics)
    hub = CurveHub(endpoint, hub_secret, allowed, store)
    hub.ack_first = 3
    hub.start()
    spool_path = tmp_path / "spool.db"
    script = textwrap.dedent(EDGE).format(
        spool=str(spool_path), endpoint=endpoint, secret=str(edge_secret),
        hub_public=str(hub_secret.with_suffix(".key")),
    )  # fmt: skip
    edge = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, env=os.environ.copy()
    )
    assert edge.stdout is not None
    assert (await asyncio.wait_for(edge.stdout.readline(), 60)).decode().strip() == "acked"
    await asyncio.to_thread(hub.wait_batches, 4, 30)
    assert hub.batches == 4 and store.count() == 200  # the fourth batch is stored, unacknowledged
    edge.send_signal(signal.SIGKILL)
    await asyncio.wait_for(edge.communicate(), 10)  # reads the pipe to its end, so nothing is left open

    spool = TelemetrySpool(spool_path)
    assert spool.stats().pending_events == 350  # acknowledged batches are gone, the rest survived
    hub.ack_first = None
    transport = CurveEdgeTransport(endpoint, edge_secret, hub_secret.with_suffix(".key"))
    assert await TelemetryDeliverer(spool, transport, timeout_s=5).drain(deadline_s=30)
    hub.stop()
    assert store.count() == 500
    assert {ev.event_id for _, ev in store.events()} == {f"e{i:04d}" for i in range(500)}
    assert metrics.duplicates._value.get() == 50  # the re-sent fourth batch, stored once
    transport.close()
    spool.close()
    store.close()
