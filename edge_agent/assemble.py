"""Build a running agent's parts from settings: local model, hub link, caches, telemetry, app.

The CLI and the end-to-end tests use the same assembly, so what is tested is what is served.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from aiohttp import web
from prometheus_client import CollectorRegistry

from edge_agent.api.state import EmbeddingModel
from edge_agent.app import ClosingResource, DeliveryResource, Managed, create_app
from edge_agent.backends.base import LocalBackend, LocalBackendFactory
from edge_agent.backends.locate import model_dirs
from edge_agent.cache.embedding import MemoEmbedder
from edge_agent.cache.service import CacheService
from edge_agent.cache.spare import SpareEmbedder
from edge_agent.cache.stage import CacheStage
from edge_agent.cache.sync import GlobalCacheFollower
from edge_agent.hub_link import HubLink
from edge_agent.images.gateway import ImageGateway, Recorder
from edge_agent.images.store import EdgeAssetStore
from edge_agent.policies import CalibratedPolicy, PolicySource
from edge_agent.request import AnswerCache, EscalationPolicy
from edge_agent.telemetry.delivery import TelemetryDeliverer
from edge_agent.telemetry.metrics import EdgeMetrics
from edge_agent.telemetry.recorder import TelemetryRecorder
from edge_agent.telemetry.sink import TelemetrySink
from edge_agent.telemetry.spool import TelemetrySpool
from models.manifest import artifact_path
from shared.backends import EDGE_BACKENDS, load_class
from shared.config import EdgeSettings, cache_endpoints
from shared.embedding import Embedder, EmbedderClosed, OnnxEmbedder
from shared.keys import init_keys, load_public, load_secret
from shared.routing.embed import TextEmbedder
from shared.routing.escalation import CascadeJudge

log = logging.getLogger(__name__)
EMBEDDING_MODEL = "minilm-l6-v2-onnx"


def load_backend(settings: EdgeSettings) -> LocalBackend:
    """The local model ``local_model.backend`` names, built from its config (blocking: it loads).

    The backend's module is imported only here, so the agent pays for the one it runs."""
    factory = cast(LocalBackendFactory, load_class(EDGE_BACKENDS, settings.local_model.backend))
    return factory.from_config(settings)


def build_hub_link(settings: EdgeSettings) -> HubLink | None:
    if not settings.hub_url:
        return None
    if settings.hub_public_key_file is None:
        raise ValueError("a hub URL needs the hub's public key file (--hub-key / hub_public_key_file)")
    _, secret = init_keys(settings.keys_dir)
    return HubLink(
        settings.hub_url,
        load_public(settings.hub_public_key_file),
        secret,
        heartbeat_s=settings.heartbeat_s,
    )


def open_embedder(settings: EdgeSettings, threads: int = 2) -> OnnxEmbedder | None:
    """The installed embedding model from the first models directory that has it."""
    for base in model_dirs(settings):
        try:
            return OnnxEmbedder(artifact_path(EMBEDDING_MODEL, base), threads=threads)
        except FileNotFoundError:
            continue
    return None


def open_spare_embedder(settings: EdgeSettings) -> Embedder | None:
    """The semantic index's embedder on spare CPU: a child process at the lowest priority, or
    ``None`` (indexing then shares the agent's own session) when one cannot start."""
    for base in model_dirs(settings):
        path = artifact_path(EMBEDDING_MODEL, base)
        if path.is_dir():
            try:
                return SpareEmbedder(path)
            except (EmbedderClosed, OSError) as exc:
                log.warning("semantic index embeds in the agent's process: %s", exc)
                return None
    return None


def shared_embedder(service: CacheService | None) -> MemoEmbedder | None:
    """The semantic cache's embedder, which the routing heads share so a question is embedded once."""
    embedder = service.semantic.embedder if service is not None and service.semantic is not None else None
    return embedder if isinstance(embedder, MemoEmbedder) else None


def open_cache(settings: EdgeSettings) -> CacheService:
    """The edge cache; semantic lookups only when the embedding model is installed."""
    cfg = settings.cache
    embedder: MemoEmbedder | None = None
    if cfg.semantic:
        model = open_embedder(settings)
        if model is None:
            log.warning("embedding model %s not installed: semantic cache off", EMBEDDING_MODEL)
        else:
            embedder = MemoEmbedder(model, background=open_spare_embedder(settings))
    settings.home.mkdir(parents=True, exist_ok=True)
    return CacheService(cfg.path or settings.home / "cache.db", cfg, embedder=embedder)


def build_follower(settings: EdgeSettings, service: CacheService) -> GlobalCacheFollower | None:
    """Follows the hub's global cache into the local store, when there is a hub and a semantic cache."""
    if not settings.hub_url or settings.hub_public_key_file is None or service.semantic is None:
        return None
    cfg = settings.cache
    pub, snap = cfg.hub_pub_endpoint, cfg.hub_snapshot_endpoint
    if pub is None or snap is None:
        derived = cache_endpoints(settings.hub_url)
        pub, snap = pub or derived[0], snap or derived[1]
    public, secret = load_secret(init_keys(settings.keys_dir)[1])
    return GlobalCacheFollower(
        service.semantic,
        pub_endpoint=pub,
        snapshot_endpoint=snap,
        server_key=load_public(settings.hub_public_key_file),
        public_key=public,
        secret_key=secret,
    )


def embedding_model(settings: EdgeSettings, service: CacheService | None) -> EmbeddingModel | None:
    """What ``POST /v1/embeddings`` serves: the semantic cache's embedder, already loaded, else
    the installed one; ``None`` when the model is not installed."""
    memo = shared_embedder(service)
    embedder = memo.inner if memo is not None else None
    if not isinstance(embedder, OnnxEmbedder):
        embedder = open_embedder(settings)
    return EmbeddingModel(EMBEDDING_MODEL, embedder) if embedder is not None else None


def build_policy(
    settings: EdgeSettings, source: PolicySource | None = None, embedder: TextEmbedder | None = None
) -> EscalationPolicy | None:
    """The calibrated cascade policy when configured; ``None`` keeps the app's threshold rule.

    ``source`` (the hub link) supplies the hub's routing policy and canary once it sends them;
    ``embedder``, the semantic cache's, lets the heads reuse a vector the cache already computed."""
    if settings.escalation_policy != "calibrated":
        return None
    embedder = embedder or open_embedder(settings)
    if embedder is None:
        log.warning("embedding model %s not installed: routing heads use base rates", EMBEDDING_MODEL)
    return CalibratedPolicy(CascadeJudge.from_settings(settings, embedder), source)


def open_image_gateway(
    settings: EdgeSettings, hub: HubLink | None, record: Recorder | None = None
) -> ImageGateway | None:
    """The image and video endpoints over the edge's asset store (``<home>/images.db``)."""
    cfg = settings.images
    if not cfg.enabled:
        return None
    store = EdgeAssetStore(cfg.path or settings.home / "images.db", max_assets=cfg.max_assets)
    return ImageGateway(store, hub, timeout_s=cfg.timeout_s, record=record)


async def build_app(settings: EdgeSettings) -> web.Application:
    """The app with every part it owns: local model, hub link, caches, telemetry spool."""
    backend = await asyncio.to_thread(load_backend, settings)
    resources: list[Managed] = []
    try:
        hub = build_hub_link(settings)
        registry = CollectorRegistry()
        caches: list[AnswerCache] = []
        service: CacheService | None = None
        if settings.cache.enabled:
            try:
                service = await asyncio.to_thread(open_cache, settings)
            except Exception:  # a cache only saves work: serve without it rather than not at all
                log.exception("edge cache unavailable: serving without it")
            else:
                resources.append(ClosingResource(service))
                stage = CacheStage(service, judge=hub)
                caches.append(stage)
                resources.append(stage)  # after the service: stops sending before the file closes
                # after the service, so it stops before the store it writes to is closed
                follower = build_follower(settings, service)
                if follower is not None:
                    resources.append(follower)
        settings.home.mkdir(parents=True, exist_ok=True)
        spool = TelemetrySpool(settings.home / "telemetry.db", settings.telemetry_spool_max_bytes)
        metrics = EdgeMetrics(registry)
        recorder = TelemetryRecorder(spool, metrics, capture_content=settings.telemetry_capture_content)
        resources.append(ClosingResource(recorder))
        if hub is not None:
            # after the recorder, so it stops before the spool it reads is closed
            resources.append(DeliveryResource(TelemetryDeliverer(spool, hub, metrics)))
        images = open_image_gateway(settings, hub, recorder.record)
    except Exception:
        for resource in reversed(resources):
            await resource.close()
        await backend.close()
        raise
    return create_app(
        settings,
        backend,
        hub=hub,
        policy=await asyncio.to_thread(build_policy, settings, hub, shared_embedder(service)),
        caches=caches,
        sink=TelemetrySink(recorder),
        feedback=recorder,
        registry=registry,
        resources=resources,
        owns_backend=True,
        embeddings=await asyncio.to_thread(embedding_model, settings, service),
        images=images,
    )
