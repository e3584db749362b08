"""The media deployment the image and video API tests share: ``cloud-hub serve`` with the tiny
random-weight pipelines enabled in its YAML (``hub_config``), and an edge agent with two tenants
linked to it (``start_agent``), its telemetry spooled to SQLite.

``Deployment`` reads back what each side kept: the events the edge spooled, and the pictures and
video frames the hub stored, so a test can check that what arrived is what the hub made.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import SecretStr

from edge_agent.app import ClosingResource, create_app
from edge_agent.backends.llamacpp import LlamaCppBackend
from edge_agent.hub_link import HubLink
from edge_agent.images.gateway import ImageGateway
from edge_agent.images.store import EdgeAssetStore
from edge_agent.serving import BackgroundAgent
from edge_agent.telemetry.metrics import EdgeMetrics
from edge_agent.telemetry.recorder import TelemetryRecorder
from edge_agent.telemetry.sink import TelemetrySink
from edge_agent.telemetry.spool import TelemetrySpool
from shared.config import EdgeSettings, TenantConfig
from shared.telemetry import TelemetryEvent
from tests.cloud_hub.helpers import HubProcess, Keys
from tests.edge_agent.api.full_agent import spooled_events

FRAME = 64 * 1024
STEPS = 8
PRICE = 0.001
SIZE = "32x32"
KEYS = {"acme": "sk-acme-images", "globex": "sk-globex-images"}


@dataclass
class Deployment:
    hub: HubProcess
    keys: Keys
    agent: BackgroundAgent
    spool: TelemetrySpool

    @property
    def url(self) -> str:
        return self.agent.base_url

    def events(self) -> list[TelemetryEvent]:
        return spooled_events(self.agent, self.spool)

    def hub_png(self, asset_id: str) -> bytes:
        with sqlite3.connect(self.keys.hub_home / "assets.db") as db:
            (png,) = db.execute("SELECT png FROM assets WHERE id = ?", (asset_id,)).fetchone()
        return bytes(png)

    def hub_frames(self, asset_id: str) -> list[bytes]:
        with sqlite3.connect(self.keys.hub_home / "assets.db") as db:
            rows = db.execute(
                "SELECT png FROM frames WHERE asset_id = ? ORDER BY idx", (asset_id,)
            ).fetchall()
        return [bytes(r[0]) for r in rows]


def hub_config(root: Path) -> Path:
    config = {
        "models": [{"name": "echo", "backend": "echo", "tier": "oss"}],
        "default_model": "echo",
        "heartbeat_s": 0.2,
        "max_frame_bytes": FRAME,
        "global_cache": {"enabled": False},
        "images": {
            "enabled": True,
            "threads": 1,
            "image": {"backend": "diffusers", "model": "tiny", "default_steps": STEPS, "usd_per_step": PRICE},
            "video": {"backend": "wan", "model": "tiny", "default_steps": 6, "usd_per_step": 10 * PRICE},
        },
    }
    path = root / "hub.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_agent(
    home: Path, link: HubLink | None, backend: LlamaCppBackend
) -> tuple[BackgroundAgent, TelemetrySpool]:
    tenants = [TenantConfig(name=name, api_key=SecretStr(key)) for name, key in KEYS.items()]
    settings = EdgeSettings(home=home, heartbeat_s=0.3, tenants=tenants)
    spool = TelemetrySpool(home / "telemetry.db")
    recorder = TelemetryRecorder(spool, EdgeMetrics())
    gateway = ImageGateway(EdgeAssetStore(home / "images.db"), link, timeout_s=120, record=recorder.record)
    app = create_app(
        settings,
        backend,
        hub=link,
        images=gateway,
        # as in ``build_app``: the sink and the gateway share one recorder, so ``drain`` covers both
        sink=TelemetrySink(recorder),
        resources=[ClosingResource(recorder)],
        owns_backend=False,
    )
    return BackgroundAgent(app).start(), spool
