"""An agent with every part the API surface touches, all real: SmolLM2 on llama.cpp, the SQLite
cache with its exact and semantic stages, the ONNX embedder (shared by the semantic cache and
``/v1/embeddings``), and telemetry spooled to SQLite. No hub: the surface is the edge's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from edge_agent.api.state import EmbeddingModel
from edge_agent.app import ClosingResource, create_app
from edge_agent.assemble import EMBEDDING_MODEL
from edge_agent.backends.llamacpp import LlamaCppBackend
from edge_agent.cache.service import CacheService
from edge_agent.cache.stage import CacheStage
from edge_agent.serving import BackgroundAgent
from edge_agent.telemetry.metrics import EdgeMetrics
from edge_agent.telemetry.recorder import TelemetryRecorder
from edge_agent.telemetry.sink import TelemetrySink
from edge_agent.telemetry.spool import TelemetrySpool
from models.manifest import artifact_path
from shared.config import CacheSettings, EdgeSettings, TenantConfig
from shared.embedding import OnnxEmbedder
from shared.telemetry import TelemetryEvent

TENANTS = {"acme": "sk-acme-surface", "globex": "sk-globex-surface"}


def spooled_events(agent: BackgroundAgent, spool: TelemetrySpool) -> list[TelemetryEvent]:
    """Every telemetry event spooled since the last call (the agent's bookkeeping drained first)."""
    agent.drain()
    lease = spool.lease(max_events=10_000, max_bytes=1 << 30)
    if lease is None:
        return []
    spool.ack(lease.batch_id)
    return [TelemetryEvent.from_attributes(e) for e in lease.events]


@dataclass
class FullAgent:
    agent: BackgroundAgent
    spool: TelemetrySpool

    @property
    def base_url(self) -> str:
        return self.agent.base_url

    def events(self) -> list[TelemetryEvent]:
        return spooled_events(self.agent, self.spool)

    def stop(self) -> None:
        self.agent.stop()


def start_full_agent(backend: LlamaCppBackend, models_dir: Path, home: Path) -> FullAgent:
    """Threshold 0: every draft is answered locally, so a repeated question is a cache hit."""
    embedder = OnnxEmbedder(artifact_path(EMBEDDING_MODEL, models_dir))
    service = CacheService(home / "cache.db", CacheSettings(), embedder=embedder)
    spool = TelemetrySpool(home / "telemetry.db")
    recorder = TelemetryRecorder(spool, EdgeMetrics())
    tenants = [TenantConfig(name=name, api_key=SecretStr(key)) for name, key in TENANTS.items()]
    settings = EdgeSettings(home=home, confidence_threshold=0.0, draft_tokens=4, tenants=tenants)
    app = create_app(
        settings,
        backend,
        caches=[CacheStage(service)],
        sink=TelemetrySink(recorder),
        feedback=recorder,
        resources=[ClosingResource(service), ClosingResource(recorder)],
        embeddings=EmbeddingModel(EMBEDDING_MODEL, embedder),
        owns_backend=False,
    )
    return FullAgent(BackgroundAgent(app).start(), spool)
