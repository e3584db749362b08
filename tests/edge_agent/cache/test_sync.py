from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from cloud_hub.cache.publisher import CachePublisher
from cloud_hub.cache.store import GlobalCacheStore
from edge_agent.cache.db import Database
from edge_agent.cache.keys import CacheRequest
from edge_agent.cache.semantic import SemanticCache
from edge_agent.cache.sync import CacheSubscriber
from edge_agent.cache.verifier import Verifier
from shared.cache_text import system_hash
from shared.embedding import Embedder
from shared.wire import ChatMessage

FAMILY = "qwen2.5-coder-0.5b-instruct"
SYS = system_hash([])


class Hub:
    def __init__(self, path: Path) -> None:
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.public, self.secret = zmq.curve_keypair()
        self.store = GlobalCacheStore(path, min_tenants=2)
        self.pub = CachePublisher(
            self.ctx,
            self.store,
            pub_endpoint="tcp://127.0.0.1:*",
            snapshot_endpoint="tcp://127.0.0.1:*",
            public_key=self.public,
            secret_key=self.secret,
            hwm=50,
        )

    def share(self, question: str, answer: str, *, publish: bool = True) -> int:
        self.store.offer(
            tenant="t1", question=question, answer=answer, family=FAMILY, sys_hash=SYS, passed_checks=True
        )
        entry = self.store.offer(
            tenant="t2", question=question, answer=answer, family=FAMILY, sys_hash=SYS, passed_checks=True
        )
        assert entry is not None
        if publish:
            self.pub.publish(entry)
        return entry.version

    def close(self) -> None:
        self.pub.close()
        self.store.close()
        self.ctx.term()


class Edge:
    def __init__(self, path: Path, hub: Hub, embedder: Embedder) -> None:
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.db = Database(path)
        self.cache = SemanticCache(self.db, embedder, Verifier.load())
        pub, sec = zmq.curve_keypair()
        self.sub = CacheSubscriber(
            self.ctx,
            self.cache,
            pub_endpoint=hub.pub.pub_endpoint,
            snapshot_endpoint=hub.pub.snapshot_endpoint,
            server_key=hub.public,
            public_key=pub,
            secret_key=sec,
        )

    def ask(self, question: str, tenant: str = "anyone") -> str | None:
        msgs = (ChatMessage(role="user", content=question),)
        hit = self.cache.get(CacheRequest(tenant=tenant, model=FAMILY, messages=msgs)).answer
        return None if hit is None else hit.text

    def follow_until(self, seq: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.sub.seq < seq and time.monotonic() < deadline:
            self.sub.poll_once(100)
        assert self.sub.seq == seq

    def close(self) -> None:
        self.sub.close()
        self.db.close()
        self.ctx.term()


@pytest.fixture()
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = Hub(tmp_path / "global.db")
    yield h
    h.close()


def test_edge_follows_deltas_and_converges_after_missing_some(
    tmp_path: Path, hub: Hub, embedder: Embedder
) -> None:
    edge = Edge(tmp_path / "edge.db", hub, embedder)
    assert edge.sub.catch_up() == 0
    time.sleep(0.3)  # let the SUB connection finish its CURVE handshake before the first delta
    v1 = hub.share("What is the capital of France?", "Paris.")
    edge.follow_until(v1)
    assert edge.ask("what is the capital of france") == "Paris."
    edge.close()

    # while the edge is offline: two new answers, one retraction
    hub.share("How do I reverse a list in Python?", "lst[::-1]")
    hub.share("What is TCP?", "A transport protocol.")
    gone = hub.store.retract(hub.store.changes_since(0)[0][0].key)
    assert gone is not None
    hub.pub.publish(gone)

    edge = Edge(tmp_path / "edge.db", hub, embedder)
    try:
        assert edge.sub.seq == v1  # resumed from its own store
        assert edge.sub.catch_up() == hub.store.seq == 4
        assert edge.ask("What is the capital of France?") is None
        assert edge.ask("how do I reverse a list in python") == "lst[::-1]"
        # a delta lost in flight: the next one reveals the gap and triggers a snapshot
        time.sleep(0.3)
        hub.share("What is UDP?", "A datagram protocol.", publish=False)
        v6 = hub.share("What is DNS?", "The internet's phone book.")
        edge.follow_until(v6)
        assert edge.sub.snapshots == 2
        assert edge.ask("What is UDP?") == "A datagram protocol."
        assert edge.cache.count()[0] == 4
    finally:
        edge.close()


def test_stalled_subscriber_does_not_block_the_hub(hub: Hub) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    stalled = ctx.socket(zmq.SUB)
    stalled.curve_serverkey = hub.public
    stalled.curve_publickey, stalled.curve_secretkey = zmq.curve_keypair()
    stalled.rcvhwm = 10
    stalled.setsockopt(zmq.SUBSCRIBE, b"")
    stalled.connect(hub.pub.pub_endpoint)
    time.sleep(0.3)
    try:
        for i in range(1500):
            hub.share(f"Who wrote book number {i}?", "x" * 20000)
        received = 0
        while stalled.poll(200):
            stalled.recv_multipart()
            received += 1
        # every publish returned, and the reader that never read lost deltas instead of holding them
        assert 0 < received < 1500
    finally:
        stalled.close(linger=0)
        ctx.term()
