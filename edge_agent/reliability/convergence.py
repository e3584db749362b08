"""T13: every edge reaches the hub's global cache version after partitions and restarts.

A hub process publishes one global-cache entry per answered question (``min_tenants: 1``) while
three edges follow it, each through its own pair of fault proxies (the PUB feed and the snapshot
socket). The edges are partitioned, healed and restarted at random during the updates; after the
last heal, every edge must hold exactly the hub's key set at the hub's sequence number within
``CONVERGE_S``, however quiet the hub is by then. A stale delta replayed to an edge changes
nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from dataclasses import dataclass
from pathlib import Path

import zmq

from edge_agent.cache.service import CacheService
from edge_agent.cache.sync import CacheSubscriber
from edge_agent.hub_link import HubLink
from edge_agent.reliability.delivery import wait_link
from edge_agent.reliability.harness import HashEmbedder
from shared.cache_text import GlobalEntry
from shared.config import CacheSettings, cache_endpoints
from shared.faultproxy import FaultProxy
from shared.hubproc import HubServer, LinkKeys
from shared.keys import load_public, load_secret
from shared.reliability import Report, Result, Size, pick
from shared.wire import ChatMessage, Escalate, SamplingParams

NAME = "global cache convergence after partitions and restarts"
CONVERGE_S = 30.0


@dataclass
class Follower:
    """One edge's store and subscriber, reached through two fault proxies."""

    db: Path
    pub: FaultProxy
    snap: FaultProxy
    keys: LinkKeys
    ctx: zmq.Context[zmq.Socket[bytes]]
    service: CacheService | None = None
    sub: CacheSubscriber | None = None
    restarts: int = 0
    partitions: int = 0

    def open(self) -> None:
        self.service = CacheService(self.db, CacheSettings(), embedder=HashEmbedder())
        assert self.service.semantic is not None
        public, secret = load_secret(self.keys.edge_secret_file)
        self.sub = CacheSubscriber(
            self.ctx,
            self.service.semantic,
            pub_endpoint=self.pub.endpoint,
            snapshot_endpoint=self.snap.endpoint,
            server_key=load_public(self.keys.hub_public_file),
            public_key=public,
            secret_key=secret,
            snapshot_timeout_s=2.0,
        )
        self.sub.start()

    def close(self) -> None:
        if self.sub is not None:
            self.sub.close()
            self.sub = None
        if self.service is not None:
            self.service.close()
            self.service = None

    def state(self) -> tuple[int, str]:
        """(sequence number applied, hash of the hub keys held)."""
        assert self.service is not None and self.service.semantic is not None
        with self.service.db.read() as conn:
            keys = sorted(
                str(k) for (k,) in conn.execute("SELECT hub_key FROM sem_entries WHERE hub_key IS NOT NULL")
            )
        return self.service.semantic.hub_seq(), hashlib.sha256("\n".join(keys).encode()).hexdigest()

    def partition(self) -> None:
        self.partitions += 1
        self.pub.partition()
        self.snap.partition()

    def heal(self) -> None:
        for proxy in (self.pub, self.snap):
            proxy.heal()
            proxy.cut()  # connections held in the black hole are stuck in their handshake


async def _publish(link: HubLink, n: int, chaos: list[Follower], rng: random.Random) -> None:
    for i in range(n):
        req = Escalate(
            request_id=f"gc-{i}",
            model="",
            messages=[ChatMessage(role="user", content=f"What is the boiling point of compound {i}?")],
            params=SamplingParams(temperature=0.0, max_tokens=32),
            deadline=time.time() + 20,
            tenant="tenant-a",
            cache_family="echo-family",
        )
        await link.escalate(req)
        await asyncio.sleep(rng.uniform(0.01, 0.1))
        f = rng.choice(chaos)
        roll = rng.random()
        if roll < 0.08:
            await asyncio.to_thread(f.partition)
        elif roll < 0.16:
            await asyncio.to_thread(f.heal)
        elif roll < 0.20:
            await asyncio.to_thread(f.close)
            f.restarts += 1
            await asyncio.to_thread(f.open)


def reference(
    hub: HubServer, keys: LinkKeys, ctx: zmq.Context[zmq.Socket[bytes]], db: Path
) -> tuple[tuple[int, str], int]:
    """The hub's own state as a fresh edge's full snapshot sees it (no proxy in the way), and how
    many rows a stale delta replayed onto that edge changed."""
    pub, snap = cache_endpoints(hub.endpoint)
    service = CacheService(db, CacheSettings(), embedder=HashEmbedder())
    assert service.semantic is not None
    public, secret = load_secret(keys.edge_secret_file)
    sub = CacheSubscriber(
        ctx,
        service.semantic,
        pub_endpoint=pub,
        snapshot_endpoint=snap,
        server_key=load_public(keys.hub_public_file),
        public_key=public,
        secret_key=secret,
    )
    try:
        sub.catch_up()
        with service.db.read() as conn:
            rows = conn.execute("SELECT hub_key FROM sem_entries WHERE hub_key IS NOT NULL")
            hub_keys = sorted(str(k) for (k,) in rows)
        state = (service.semantic.hub_seq(), hashlib.sha256("\n".join(hub_keys).encode()).hexdigest())
        return state, _replay_stale(service)
    finally:
        sub.close()
        service.close()


def _replay_stale(service: CacheService) -> int:
    """Re-apply an entry older than the store's sequence number: how many rows that changed."""
    assert service.semantic is not None
    seq = service.semantic.hub_seq()
    old = GlobalEntry(
        key="stale-key", op="put", question="a stale question", answer="stale", family="f", sys_hash="",
        domain="general", version=max(seq - 1, 0),
    )  # fmt: skip
    return service.semantic.apply_global([old], seq, time.time())


async def _t13(size: Size, work: Path, r: Report) -> None:
    n = pick(size, 40, 200, 500)
    keys = LinkKeys.make(work / "keys")
    hub = HubServer(keys, global_cache=True, extra={"global_cache": {"enabled": True, "min_tenants": 1}})
    await asyncio.to_thread(hub.start)
    pub_end, snap_end = cache_endpoints(hub.endpoint)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    followers: list[Follower] = []
    rng = random.Random(13)
    link = HubLink(hub.endpoint, load_public(keys.hub_public_file), keys.edge_secret_file, heartbeat_s=0.5)
    try:
        for k in range(3):
            pub = FaultProxy("127.0.0.1", int(pub_end.rsplit(":", 1)[1])).start_in_thread()
            snap = FaultProxy("127.0.0.1", int(snap_end.rsplit(":", 1)[1])).start_in_thread()
            f = Follower(work / f"edge{k}.db", pub, snap, keys, ctx)
            f.open()
            followers.append(f)
        await link.start()
        await wait_link(link)
        await _publish(link, n, followers, rng)
        for f in followers:
            await asyncio.to_thread(f.heal)
        healed = time.monotonic()
        want_state, stale_rows = await asyncio.to_thread(reference, hub, keys, ctx, work / "reference.db")
        converged: float | None = None
        while time.monotonic() - healed < CONVERGE_S:
            states = [await asyncio.to_thread(f.state) for f in followers]
            if all(s == want_state for s in states):
                converged = time.monotonic() - healed
                break
            await asyncio.sleep(0.2)
        states = [await asyncio.to_thread(f.state) for f in followers]
    finally:
        await link.close()
        for f in followers:
            f.close()
            f.pub.stop()
            f.snap.stop()
        ctx.term()
        await asyncio.to_thread(hub.stop)
    r.figure(
        updates=n,
        hub_seq=want_state[0],
        edges=len(followers),
        partitions=sum(f.partitions for f in followers),
        restarts=sum(f.restarts for f in followers),
        edges_converged=sum(s == want_state for s in states),
        behind_by=max(want_state[0] - s[0] for s in states),
        converged_after_s=converged,
        stale_rows_applied=stale_rows,
    )
    r.require(want_state[0] == n, f"the hub published {want_state[0]} of {n} updates")
    r.require(converged is not None, f"edges still differ {CONVERGE_S:.0f}s after the last heal: {states}")
    r.require(stale_rows == 0, "a stale delta changed an edge's cache")
    r.require(sum(f.partitions for f in followers) > 0, "no edge was ever partitioned")


def t13_convergence(size: Size, work: Path) -> Result:
    r = Report("T13", NAME)
    asyncio.run(_t13(size, work, r))
    return r.result()
