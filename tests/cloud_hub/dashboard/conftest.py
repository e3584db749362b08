"""A hub with the real telemetry service, fleet traffic delivered to it, an evaluation run and a
canary, and the dashboard serving it: shared by the API tests of this folder."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from cloud_hub.cli import main as hub_cli
from cloud_hub.dashboard.app import Dashboard
from cloud_hub.dashboard.summary import Sources
from cloud_hub.dashboard.token import load_token
from cloud_hub.dashboard.traffic import FrontierPrice
from cloud_hub.evaluation.canary import CanaryController
from cloud_hub.server import Hub
from cloud_hub.telemetry.service import HubTelemetry
from cloud_hub.telemetry.store import store_path
from shared.config import CostModel
from shared.keys import key_paths
from tests.cloud_hub.dashboard.fleet_traffic import Edge, FleetKeys, enrol_edges, send_traffic
from tests.cloud_hub.helpers import build_registry

HEARTBEAT_S = 0.5
PRICE = FrontierPrice("gpt-test", CostModel(usd_per_1k_prompt=0.01, usd_per_1k_completion=0.03))


@dataclass
class Deployment:
    home: Path
    hub: Hub
    sink: HubTelemetry
    keys: FleetKeys
    edges: dict[str, Edge]
    board: Dashboard
    token: str
    now: float


async def deploy(root: Path) -> Deployment:
    home = root / "hub"
    assert hub_cli(["keys", "init", "--home", str(home)]) == 0
    keys = enrol_edges(home, root / "edges")
    # a canary an earlier `eval run --recalibrate` would have started
    CanaryController(home / "policy.json").start(0.7, share=0.2)
    sink = HubTelemetry(store_path(home))
    hub = Hub(
        bind="tcp://127.0.0.1:0",
        secret_key_file=key_paths(home / "keys")[1],
        enrolled_dir=home / "enrolled",
        registry=build_registry(),
        sink=sink,
        heartbeat_s=HEARTBEAT_S,
        enrol_poll_s=0.1,
        policy_file=home / "policy.json",
    )
    await hub.start()
    now = time.time()
    edges = await send_traffic(hub.endpoint, keys, root / "edges", now)
    run = ["eval", "run", "--home", str(home), "--no-mlflow", "--min-n", "3", "--target", "math=0.9"]
    assert await asyncio.to_thread(hub_cli, run) == 0
    sources = Sources(sink.store, home, PRICE, home / "enrolled", HEARTBEAT_S)
    board = Dashboard(sources, load_token(home), lambda: dict(hub.edges))
    await board.start("127.0.0.1", 0)
    return Deployment(home, hub, sink, keys, edges, board, load_token(home), now)


async def tear_down(d: Deployment) -> None:
    await d.board.close()
    for edge in d.edges.values():
        await edge.close()
    await d.hub.close()
    await d.hub.registry.close()
    d.sink.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def deployment(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployment]:
    d = await deploy(tmp_path_factory.mktemp("dashboard"))
    yield d
    await tear_down(d)
