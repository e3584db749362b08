"""A real hub for the edge's tests, waiting until an agent's link to it is up, and reading the
agent's streamed answers.

Two ways to run one: ``hub_process`` is ``cloud-hub serve`` as a child (echo or other configured
backends, as deployed), ``hub_in_thread`` an in-process ``Hub`` on an event loop of its own, for a
test that hands it objects to inspect (a global cache, a judge). Either way the edge key under
``<root>/edge/keys`` is the one the hub enrolled.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from cloud_hub.server import Hub
from edge_agent.app import ClosingResource, create_app
from edge_agent.assemble import build_hub_link
from edge_agent.backends.base import LocalBackend
from edge_agent.cache.embedding import load_embedder
from edge_agent.cache.service import CacheService
from edge_agent.cache.stage import CacheStage
from edge_agent.request import EscalationPolicy
from edge_agent.serving import BackgroundAgent
from shared.config import CacheSettings, EdgeSettings
from shared.keys import key_paths
from tests.cloud_hub.helpers import HubProcess, make_keys, write_config

START_S = 30.0  # an in-process hub starts in well under a second; this is for a loaded machine


def wait_hub(base_url: str, status: str = "connected", timeout_s: float = 30.0) -> None:
    """Block until the agent at ``base_url`` reports its hub link as ``status``.

    Polled: the link's state follows heartbeats, and nothing signals when it changes.
    """
    end = time.monotonic() + timeout_s
    while httpx.get(f"{base_url}/health").json()["hub"] != status:
        if time.monotonic() > end:
            raise AssertionError(f"{base_url}: the hub link never became {status!r}")
        time.sleep(0.1)


@contextmanager
def hub_process(root: Path, models: Sequence[dict[str, object]], default: str) -> Iterator[HubProcess]:
    """``cloud-hub serve`` with ``models`` (``hub.yaml`` entries) under ``root``, killed on exit."""
    keys = make_keys(root)
    process = HubProcess(keys.hub_home, write_config(root / "hub.yaml", models, default))
    process.start()
    try:
        yield process
    finally:
        process.kill()


def edge_settings(hub: HubProcess, **fields: Any) -> EdgeSettings:
    """An agent's settings for ``hub``, with the edge key it enrolled: quick heartbeats and a hub
    timeout a loaded machine still meets; ``fields`` set any other ``EdgeSettings`` field."""
    linked: dict[str, Any] = {
        "home": hub.home.parent / "edge",
        "hub_url": hub.endpoint,
        "hub_public_key_file": key_paths(hub.home / "keys")[0],
        "heartbeat_s": 0.3,
        "hub_timeout_s": 20,
    }
    return EdgeSettings(**(linked | fields))


@contextmanager
def linked_agent(
    settings: EdgeSettings, backend: LocalBackend, policy: EscalationPolicy | None = None
) -> Iterator[BackgroundAgent]:
    """An agent on ``settings`` serving ``backend`` (not closed with it), once its hub link is up."""
    app = create_app(settings, backend, hub=build_hub_link(settings), policy=policy, owns_backend=False)
    with BackgroundAgent(app) as running:
        wait_hub(running.base_url)
        yield running


@contextmanager
def cached_agent(home: Path, backend: LocalBackend, models_dir: Path) -> Iterator[BackgroundAgent]:
    """An agent with no hub that answers every draft locally (threshold 0), so every first answer
    is stored, behind a real SQLite cache with both stages (exact and semantic)."""
    service = CacheService(home / "cache.db", CacheSettings(), embedder=load_embedder(models_dir))
    assert service.semantic is not None
    settings = EdgeSettings(home=home, confidence_threshold=0.0, draft_tokens=4)
    app = create_app(
        settings,
        backend,
        caches=[CacheStage(service)],
        resources=[ClosingResource(service)],
        owns_backend=False,
    )
    with BackgroundAgent(app) as running:
        yield running


@contextmanager
def hub_in_thread(hub: Hub) -> Iterator[Hub]:
    """``hub`` started, and closed on exit, on an event loop running in a thread of its own.

    The agent under test runs its own loop in another thread, so the two never share one: a stall
    on either side shows as the timeout it would be in a deployment.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="hub-under-test", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(hub.start(), loop).result(START_S)
        try:
            yield hub
        finally:
            asyncio.run_coroutine_threadsafe(hub.close(), loop).result(START_S)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def sse_chunks(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON chunks of an OpenAI-style event stream, in order (``[DONE]`` is not one)."""
    return [
        json.loads(line.removeprefix("data: "))
        for line in response.iter_lines()
        if line.startswith("data: {")
    ]


def streamed_text(chunks: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The text a stream's chunks add up to, and its last chunk; an error chunk fails the test."""
    text = ""
    for chunk in chunks:
        assert "error" not in chunk, chunk
        text += "".join(choice["delta"].get("content") or "" for choice in chunk["choices"])
    return text, chunks[-1] if chunks else {}
