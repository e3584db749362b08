"""A bypassed request that escalates: the hub is told, and its global cache neither offers nor
publishes the answer. Real in-process hub (echo backend, CURVE link, a global cache that shares
after one tenant) and a real agent; the hub's cache records the ``Escalate`` frames it observed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud_hub.cache.sharing import GlobalCache
from cloud_hub.cache.store import GlobalCacheStore
from edge_agent.app import create_app
from edge_agent.backends.llamacpp import LlamaCppBackend
from edge_agent.hub_link import HubLink
from edge_agent.serving import BackgroundAgent
from shared.cache_text import GlobalEntry
from shared.config import EdgeSettings, GlobalCacheSettings
from shared.wire import Escalate, Reply
from tests.cloud_hub.helpers import build_hub, make_keys
from tests.edge_agent.live import hub_in_thread, wait_hub


class ObservedCache(GlobalCache):
    """The hub's real global cache, keeping the requests it was shown."""

    def __init__(self, store: GlobalCacheStore, settings: GlobalCacheSettings) -> None:
        super().__init__(store, settings)
        self.seen: list[Escalate] = []

    async def observe(self, req: Escalate, edge_id: str, reply: Reply) -> GlobalEntry | None:
        self.seen.append(req)
        return await super().observe(req, edge_id, reply)


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, smollm_backend: LlamaCppBackend
) -> Iterator[tuple[BackgroundAgent, ObservedCache]]:
    root: Path = tmp_path_factory.mktemp("bypass-hub")
    keys = make_keys(root)
    settings = GlobalCacheSettings(
        min_tenants=1, pub_bind="tcp://127.0.0.1:0", snapshot_bind="tcp://127.0.0.1:0"
    )
    cache = ObservedCache(GlobalCacheStore(root / "global.db", min_tenants=1), settings)
    with hub_in_thread(build_hub(keys, heartbeat_s=0.3, global_cache=cache)) as hub:
        edge = EdgeSettings(home=root / "edge", hub_timeout_s=20, heartbeat_s=0.3)
        link = HubLink(hub.endpoint, keys.hub_public, keys.edge_secret_file, heartbeat_s=0.3)
        with BackgroundAgent(create_app(edge, smollm_backend, hub=link, owns_backend=False)) as running:
            wait_hub(running.base_url)
            yield running, cache


def _ask(agent: BackgroundAgent, question: str, stream: bool, headers: dict[str, str]) -> str:
    """Ask the hub (forced) and return the route that answered."""
    body: dict[str, Any] = {
        "model": "hub",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 32,
        "temperature": 0,
        "stream": stream,
    }
    url = f"{agent.base_url}/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=headers, timeout=60) as response:
        assert response.status_code == 200, response.read()
        response.read()
        return response.headers["x-edgeroute-route"]


def _eventually(done: Callable[[], bool], timeout: float = 10.0) -> None:
    # the hub offers a reply only after it sent it: the edge may have its answer first
    end = time.monotonic() + timeout
    while not done() and time.monotonic() < end:
        time.sleep(0.02)
    assert done()


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_bypassed_escalation_is_never_shared(
    deployment: tuple[BackgroundAgent, ObservedCache], stream: bool
) -> None:
    agent, cache = deployment
    question = f"What is a TCP handshake, streamed={stream}?"
    seen, offered, seq = len(cache.seen), cache.offered, cache.store.seq

    assert _ask(agent, question, stream, {"x-edgeroute-cache": "bypass"}) == "hub_oss"
    _eventually(lambda: len(cache.seen) == seen + 1)
    esc = cache.seen[-1]
    assert esc.cache_bypass is True and esc.cache_family == ""
    assert esc.stream is stream
    time.sleep(0.2)  # an offer would have been counted by now (the control shows it is)
    assert cache.offered == offered and cache.store.seq == seq

    # the control: the same request without the header is offered and (one tenant suffices) shared
    assert _ask(agent, question, stream, {}) == "hub_oss"
    _eventually(lambda: cache.store.seq == seq + 1)
    esc = cache.seen[-1]
    assert len(cache.seen) == seen + 2
    assert esc.cache_bypass is False and esc.cache_family != ""
    assert cache.offered == offered + 1
