"""An edge agent assembled the way ``edge_agent.assemble`` does it, around a model-free backend.

The failure scenarios are about the router (caches, spool, link, API), not about generating text,
so the local model is ``EchoModel``: it answers the last user turn word by word at a set pace,
with a set confidence, through one worker like llama.cpp, and counts what it was asked. Every
other part is the real one: the aiohttp app on a real port, the SQLite cache and spool, the CURVE
hub link and telemetry delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from edge_agent.api.state import STATE
from edge_agent.app import ClosingResource, DeliveryResource, Managed, create_app
from edge_agent.backends.base import GenerationEnd, GenerationEvent, GenerationJob, TokenStep
from edge_agent.cache.service import CacheService
from edge_agent.cache.stage import CacheStage
from edge_agent.hub_link import HubLink
from edge_agent.request import AnswerCache
from edge_agent.telemetry.delivery import TelemetryDeliverer
from edge_agent.telemetry.metrics import EdgeMetrics
from edge_agent.telemetry.recorder import TelemetryRecorder
from edge_agent.telemetry.sink import TelemetrySink
from edge_agent.telemetry.spool import TelemetrySpool
from shared.config import CacheSettings, EdgeSettings, TenantConfig
from shared.embedding import Embedder, Vectors
from shared.hubproc import LinkKeys
from shared.keys import load_public


class HashEmbedder:
    """Unit vectors from a hash of the text: the same text, the same vector; nothing else alike.

    A stand-in for the sentence model where a scenario tests storage, not similarity (crash
    consistency, sync convergence): it keeps the vector index busy without loading a model.
    """

    dim = 384

    def embed(self, texts: list[str]) -> Vectors:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
            v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)


class EchoModel:
    """A ``LocalBackend`` answering the last user turn; ``prob`` is every token's probability."""

    def __init__(
        self, *, token_delay_s: float = 0.0, prob: float = 0.99, workers: int = 1, tag: bool = False
    ) -> None:
        self.token_delay_s = token_delay_s
        # tag: end each answer with " #<generation number>", so every generated answer is unique
        self.tag = tag
        self.prob = prob
        self._slots = asyncio.Semaphore(workers)
        self.concurrency = workers  # read by the admission gate, as llama.cpp's one worker is
        self.calls = 0
        self.active = 0
        self.peak = 0
        self.cancelled = 0

    @property
    def model_name(self) -> str:
        return "echo-local"

    @property
    def n_ctx(self) -> int:
        return 4096

    async def stream(self, job: GenerationJob) -> AsyncGenerator[GenerationEvent, None]:
        self.calls += 1
        text = job.prompt if job.prompt is not None else ""
        for m in reversed(job.messages):
            if m.role == "user":
                text = m.content
                break
        words = text.split(" ")[: job.params.max_tokens]
        if self.tag:
            words.append(f"#{self.calls}")
        async with self._slots:
            self.active += 1
            self.peak = max(self.peak, self.active)
            finished = False
            try:
                for i in range(len(job.prefix_tokens), len(words)):
                    if self.token_delay_s:
                        await asyncio.sleep(self.token_delay_s)
                    else:
                        await asyncio.sleep(0)
                    yield TokenStep(i, math.log(self.prob), words[i] if i == 0 else " " + words[i])
                finished = True
                yield GenerationEnd("stop", prompt_tokens=len(words), completion_tokens=len(words))
            finally:
                self.active -= 1
                if not finished:
                    self.cancelled += 1

    async def close(self) -> None:
        return None


@dataclass
class HubAccess:
    """How the edge reaches the hub: an endpoint (the hub's, or a fault proxy's) and the keys."""

    endpoint: str
    keys: LinkKeys
    secret_file: Path | None = None  # another enrolled edge's secret; default the keys' edge

    def link(self, heartbeat_s: float) -> HubLink:
        secret = self.secret_file or self.keys.edge_secret_file
        return HubLink(self.endpoint, load_public(self.keys.hub_public_file), secret, heartbeat_s=heartbeat_s)


@dataclass
class EdgeOptions:
    tenants: dict[str, str] = field(default_factory=dict)  # name → API key
    budgets: dict[str, float] = field(default_factory=dict)  # name → USD per window
    cache: bool = True
    embedder: Embedder | None = None  # with one, the semantic cache is on
    threshold: float = 0.0  # 0: every draft is kept; above the model's prob: every draft escalates
    hub: HubAccess | None = None
    heartbeat_s: float = 0.5
    hub_timeout_s: float = 10.0
    deliver: bool = True
    delivery_interval_s: float = 0.2
    delivery_timeout_s: float = 2.0
    spool_max_bytes: int = 64 * 1024 * 1024
    settings: dict[str, Any] = field(default_factory=dict)  # any further EdgeSettings fields
    cache_settings: dict[str, Any] = field(default_factory=dict)  # and CacheSettings fields


@dataclass
class RunningEdge:
    app: web.Application
    runner: web.AppRunner
    base_url: str
    spool: TelemetrySpool
    backend: EchoModel
    cache: CacheService | None
    link: HubLink | None
    deliverer: TelemetryDeliverer | None
    settings: EdgeSettings

    def headers(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_edge(home: Path, backend: EchoModel, opts: EdgeOptions) -> RunningEdge:
    tenants = [
        TenantConfig(name=n, api_key=SecretStr(k), budget_usd=opts.budgets.get(n))
        for n, k in opts.tenants.items()
    ]
    settings = EdgeSettings(
        home=home,
        confidence_threshold=opts.threshold,
        draft_tokens=4,
        hub_timeout_s=opts.hub_timeout_s,
        heartbeat_s=opts.heartbeat_s,
        tenants=tenants,
        telemetry_spool_max_bytes=opts.spool_max_bytes,
        **opts.settings,
    )
    registry = CollectorRegistry()
    resources: list[Managed] = []
    caches: list[AnswerCache] = []
    service: CacheService | None = None
    if opts.cache:
        cfg = CacheSettings(semantic=opts.embedder is not None, **opts.cache_settings)
        service = CacheService(home / "cache.db", cfg, embedder=opts.embedder)
        resources.append(ClosingResource(service))
        stage = CacheStage(service)
        caches.append(stage)
        resources.append(stage)  # after the service: writes its lingering entries before the file closes
    spool = TelemetrySpool(home / "telemetry.db", opts.spool_max_bytes)
    metrics = EdgeMetrics(registry)
    recorder = TelemetryRecorder(spool, metrics)
    resources.append(ClosingResource(recorder))
    link = opts.hub.link(opts.heartbeat_s) if opts.hub is not None else None
    deliverer = None
    if link is not None and opts.deliver:
        deliverer = TelemetryDeliverer(
            spool,
            link,
            metrics,
            interval_s=opts.delivery_interval_s,
            timeout_s=opts.delivery_timeout_s,
            max_backoff_s=1.0,
        )
        resources.append(DeliveryResource(deliverer))
    app = create_app(
        settings,
        backend,
        hub=link,
        caches=caches,
        sink=TelemetrySink(recorder),
        feedback=recorder,
        registry=registry,
        resources=resources,
        owns_backend=False,
    )
    # as ``edge_agent.serving`` runs it: a client hanging up cancels its handler
    runner = web.AppRunner(app, handle_signals=False, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    return RunningEdge(
        app, runner, f"http://127.0.0.1:{port}", spool, backend, service, link, deliverer, settings
    )


async def wait_connected(edge: RunningEdge, timeout_s: float = 30.0) -> bool:
    end = asyncio.get_running_loop().time() + timeout_s
    while edge.link is not None and not edge.link.connected:
        if asyncio.get_running_loop().time() > end:
            return False
        await asyncio.sleep(0.02)
    return True


def chat(content: str, **extra: Any) -> dict[str, Any]:
    """A chat body for the echo models; greedy, so answers are cacheable."""
    body: dict[str, Any] = {
        "model": "auto",
        "messages": [{"role": "user", "content": content}],
        "temperature": 0.0,
        "max_tokens": 64,
    }
    body.update(extra)
    return body


@dataclass
class Answered:
    status: int
    text: str
    route: str
    body: dict[str, Any]
    headers: dict[str, str]
    seconds: float


async def post_chat(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> Answered:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with session.post(
        url + "/v1/chat/completions",
        json=body,
        headers=headers or {},
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    ) as resp:
        raw = await resp.read()
    with contextlib.suppress(ValueError):
        parsed = json.loads(raw)
        text = ""
        if isinstance(parsed, dict) and parsed.get("choices"):
            text = str(parsed["choices"][0]["message"]["content"])
        return Answered(
            resp.status,
            text,
            resp.headers.get("x-edgeroute-route", ""),
            parsed if isinstance(parsed, dict) else {},
            dict(resp.headers),
            loop.time() - started,
        )
    return Answered(resp.status, "", "", {}, dict(resp.headers), loop.time() - started)


@dataclass
class Streamed:
    """A streamed answer as the client saw it: text, terminal markers and in-band errors."""

    status: int
    text: str
    done: int  # ``data: [DONE]`` lines: exactly one for a finished stream
    errors: list[str]  # in-band error codes
    routes: set[str]  # every route header and chunk route seen
    seconds: float
    retry_after: str = ""


async def post_stream(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> Streamed:
    loop = asyncio.get_running_loop()
    started = loop.time()
    pieces: list[str] = []
    errors: list[str] = []
    done = 0
    async with session.post(
        url + "/v1/chat/completions",
        json={**body, "stream": True},
        headers=headers or {},
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    ) as resp:
        routes = {resp.headers.get("x-edgeroute-route", "")}
        if resp.status != 200:
            await resp.read()
            retry = resp.headers.get("Retry-After", "")
            return Streamed(resp.status, "", 0, [], routes, loop.time() - started, retry)
        async for raw in resp.content:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            if data == "[DONE]":
                done += 1
                continue
            chunk = json.loads(data)
            if "error" in chunk:
                errors.append(str(chunk["error"].get("code")))
                continue
            for choice in chunk.get("choices", []):
                pieces.append(choice.get("delta", {}).get("content") or "")
            if isinstance(chunk.get("edgeroute"), dict):
                routes.add(str(chunk["edgeroute"].get("route", "")))
    return Streamed(200, "".join(pieces), done, errors, routes - {""}, loop.time() - started)


async def settle(edge: RunningEdge, timeout_s: float = 30.0) -> None:
    """Wait until every answer's bookkeeping is done, background semantic indexing included."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while True:
        await edge.app[STATE].pipeline.drain()
        indexer = edge.cache.indexer if edge.cache is not None else None
        if indexer is None or not indexer.pending or loop.time() > end:
            return
        await asyncio.sleep(0.02)
