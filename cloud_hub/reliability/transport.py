"""T12 (slow and silent peers never block the hub) and T14 (a 100 MiB frame is cut off).

T12, global cache: a real ``CachePublisher`` publishes a burst to three subscribers: one reads,
one stalls, one (an attacker) connects and never reads. ``publish`` must never wait (p99 under
5 ms), the reader must get every delta, and the stalled one, reading at last, must see the gap in
the sequence numbers and recover everything from the snapshot socket. Link: a hub's ROUTER
answers an edge that sends requests and never reads; the hub drops and counts those replies
while another edge's heartbeats keep their round-trip time, and a reply to an edge that left is
counted as unroutable.

T14: an enrolled edge sends one 100 MiB frame to a hub process. libzmq must drop that connection
before the bytes are buffered (``ZMQ_MAXMSGSIZE``): the hub's memory grows by under 10 MB and it
keeps serving. A frame just over the codec's limit gets a typed ``oversized`` error (the control:
that limit is what turns the big frame away), and a big frame cut mid-way by the fault proxy
leaves the hub unharmed too.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import zmq
import zmq.asyncio

from cloud_hub.backends.base import Completion, StreamItem
from cloud_hub.backends.echo import EchoBackend
from cloud_hub.cache.publisher import TOPIC, CachePublisher
from cloud_hub.cache.store import GlobalCacheStore
from cloud_hub.registry import ModelRegistry, RegisteredModel
from cloud_hub.reliability.harness import Peer
from cloud_hub.server import Hub
from shared.codec import Codec
from shared.config import HubModelEntry
from shared.faultproxy import FaultProxy
from shared.hubproc import HubServer, LinkKeys
from shared.keys import key_paths, load_secret
from shared.reliability import Report, Result, Size, percentile, pick, rss_bytes, wait_for
from shared.sockets import CurveClient, SocketOptions, open_socket
from shared.wire import (
    CacheDelta,
    CacheSnapshotDone,
    CacheSnapshotRequest,
    ChatMessage,
    Error,
    Escalate,
    Heartbeat,
    Hello,
    SamplingParams,
)

T12_NAME = "stalled and never-reading subscribers never block the hub"
T14_NAME = "100 MiB frame from an authenticated peer"


def _sub(
    ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, curve: CurveClient, rcvhwm: int
) -> zmq.Socket[bytes]:
    return open_socket(
        ctx, zmq.SUB, options=SocketOptions(subscribe=(TOPIC,), rcvhwm=rcvhwm), curve=curve, connect=endpoint
    )


def _read_all(sock: zmq.Socket[bytes], seqs: list[int], stop: threading.Event) -> None:
    codec = Codec()
    while not stop.is_set() or sock.poll(200):
        if not sock.poll(50):
            continue
        _, frame = sock.recv_multipart()
        body = codec.decode(frame)
        if isinstance(body, CacheDelta) and body.entries:
            seqs.append(body.seq)


def _snapshot(
    ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, curve: CurveClient, since: int
) -> tuple[set[int], int]:
    codec = Codec()
    dealer = open_socket(ctx, zmq.DEALER, curve=curve, connect=endpoint)
    try:
        dealer.send(codec.encode(CacheSnapshotRequest(since=since)))
        got: set[int] = set()
        while dealer.poll(10_000):
            body = codec.decode(dealer.recv())
            if isinstance(body, CacheDelta):
                got.update(int(e["version"]) for e in body.entries if isinstance(e["version"], int))
            elif isinstance(body, CacheSnapshotDone):
                return got, body.seq
        return got, -1
    finally:
        dealer.close(linger=0)


def _publisher_part(size: Size, work: Path, keys: LinkKeys, r: Report) -> None:
    n = pick(size, 3000, 20000, 50000)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    hub_public, hub_secret = load_secret(key_paths(keys.hub_home / "keys")[1])
    edge_public, edge_secret = load_secret(keys.edge_secret_file)
    curve = CurveClient(server_key=hub_public, public=edge_public, secret=edge_secret)
    store = GlobalCacheStore(work / "global.db", min_tenants=1)
    pub = CachePublisher(
        ctx, store, pub_endpoint="tcp://127.0.0.1:0", snapshot_endpoint="tcp://127.0.0.1:0",
        public_key=hub_public, secret_key=hub_secret, hwm=200,
    )  # fmt: skip
    reader = _sub(ctx, pub.pub_endpoint, curve, 100_000)
    stalled = _sub(ctx, pub.pub_endpoint, curve, 50)
    attacker = _sub(ctx, pub.pub_endpoint, curve, 1)
    seqs: list[int] = []
    stop = threading.Event()
    thread = threading.Thread(target=_read_all, args=(reader, seqs, stop), daemon=True)
    thread.start()
    time.sleep(1.0)  # subscriptions reach the publisher before the burst
    took: list[float] = []
    answer = "a long shared answer " * 200
    try:
        for i in range(n):
            entry = store.offer(
                tenant="t",
                question=f"what is item {i}?",
                answer=answer,
                family="f",
                sys_hash="",
                passed_checks=True,
            )
            assert entry is not None
            t0 = time.perf_counter()
            pub.publish(entry)
            took.append(time.perf_counter() - t0)
        wait_for(lambda: len(seqs) >= n, 30)
        stop.set()
        thread.join(30)
        late: list[int] = []
        late_stop = threading.Event()
        late_stop.set()
        _read_all(stalled, late, late_stop)
        # the last sequence number before the first one missing: ask for everything after it
        first_gap = next((i for i, s in enumerate(sorted(late)) if s != i + 1), len(late))
        snap, snap_seq = _snapshot(ctx, pub.snapshot_endpoint, curve, first_gap)
        recovered = set(late) | snap
    finally:
        for s in (reader, stalled, attacker):
            s.close(linger=0)
        pub.close()
        store.close()
        ctx.term()
    p99 = percentile(took, 99) * 1000
    r.figure(
        deltas_published=n,
        publish_p99_ms=p99,
        publish_max_ms=max(took) * 1000,
        reader_received=len(set(seqs)),
        stalled_received_live=len(set(late)),
        stalled_gap_detected=len(set(late)) < n,
        stalled_after_snapshot=len(recovered & set(range(1, n + 1))),
        snapshot_seq=snap_seq,
    )
    # a publisher that waited on the stalled subscriber would take seconds, not milliseconds
    r.require(p99 < 500.0, f"publish p99 {p99:.2f} ms: the publisher waited on a subscriber")
    r.latency(size, p99 < 5.0, f"publish p99 {p99:.2f} ms (target < 5 ms)")
    r.require(len(set(seqs)) == n, f"the reading subscriber got {len(set(seqs))} of {n} deltas")
    r.require(len(set(late)) < n, "the stalled subscriber lost nothing: the high-water mark was never hit")
    r.require(
        recovered >= set(range(1, n + 1)) and snap_seq == n, "the stalled subscriber could not catch up"
    )


class DelayedEcho(EchoBackend):
    """Echo after a pause: long enough for its caller to leave before the answer exists."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    async def generate(self, messages: Sequence[ChatMessage], params: SamplingParams) -> Completion:
        await asyncio.sleep(self.delay_s)
        return await super().generate(messages, params)

    async def stream(
        self, messages: Sequence[ChatMessage], params: SamplingParams
    ) -> AsyncIterator[StreamItem]:
        await asyncio.sleep(self.delay_s)
        async for item in super().stream(messages, params):
            yield item


def _request(rid: str, model: str, words: int) -> Escalate:
    text = " ".join(["payload"] * words)
    msgs = [ChatMessage(role="user", content=text)]
    return Escalate(rid, model, msgs, SamplingParams(max_tokens=words + 1), deadline=time.time() + 60)


async def _beat(peer: Peer, rtts: list[float], done: asyncio.Event) -> None:
    """Heartbeat round trips from ``peer`` until ``done``; the hub's own beats do not count."""
    while not done.is_set():
        t0 = time.perf_counter()
        await peer.send(Heartbeat(sent_at=t0))
        while True:
            got = await peer.recv(5)
            if got is None or (isinstance(got, Heartbeat) and not got.from_hub):
                break
        rtts.append(time.perf_counter() - t0)
        await asyncio.sleep(0.01)


async def _pour(peer: Peer, tag: str, flood: int, read: bool, done: asyncio.Event) -> None:
    """``flood`` requests with 8 KB answers from ``peer``, its answers read or never read."""

    async def drain() -> None:
        while not done.is_set():
            await peer.recv(0.2)

    reader = asyncio.create_task(drain()) if read else None
    for i in range(flood):
        await peer.send(_request(f"{tag}-{i}", "echo", 1000))
        if i % 200 == 0:
            await asyncio.sleep(0)
    await asyncio.sleep(0.5)
    done.set()
    if reader is not None:
        await reader


async def _rtts_under(peer: Peer, flooder: Peer, tag: str, flood: int, read: bool) -> list[float]:
    rtts: list[float] = []
    done = asyncio.Event()
    await asyncio.gather(_beat(peer, rtts, done), _pour(flooder, tag, flood, read, done))
    return rtts


def _slow_hub(keys: LinkKeys) -> Hub:
    registry = ModelRegistry(
        [
            RegisteredModel(HubModelEntry(name="echo", backend="echo"), EchoBackend()),
            RegisteredModel(HubModelEntry(name="slow", backend="echo"), DelayedEcho(0.5)),
        ],
        "echo",
    )
    return Hub(
        bind="tcp://127.0.0.1:0",
        secret_key_file=key_paths(keys.hub_home / "keys")[1],
        enrolled_dir=keys.hub_home / "enrolled",
        registry=registry,
        heartbeat_s=0.5,
        enrol_poll_s=0.1,
    )


async def _router_part(size: Size, keys: LinkKeys, r: Report) -> None:
    # enrolled before the hub starts: a handshake the allow-list refused is not retried by libzmq
    _, other_secret = keys.another_edge(keys.hub_home.parent / "other")
    hub = _slow_hub(keys)
    await hub.start()
    ctx = zmq.asyncio.Context()
    flood = pick(size, 3000, 20000, 50000)
    try:
        healthy = Peer(ctx, hub.endpoint, keys.hub_public, other_secret)
        await healthy.send(Hello("healthy"))
        if await healthy.recv(5) is None:
            r.require(False, "the healthy edge was never answered")
            return
        # the same flood twice: from an edge that reads its answers, then from one that never does
        reading = Peer(ctx, hub.endpoint, keys.hub_public, keys.edge_secret_file)
        base = await _rtts_under(healthy, reading, "reading", flood, True)
        reading.close()
        silent = Peer(ctx, hub.endpoint, keys.hub_public, keys.edge_secret_file)
        silent.socket.rcvhwm = 10
        rtts = await _rtts_under(healthy, silent, "silent", flood, False)
        not_reading = hub.undelivered["not_reading"]
        # a request whose edge is gone by the time the answer exists
        gone = Peer(ctx, hub.endpoint, keys.hub_public, other_secret)
        await gone.send(_request("gone-1", "slow", 3))
        await asyncio.sleep(0.1)
        gone.close()
        await asyncio.sleep(1.0)
        unroutable = hub.undelivered["unroutable"]
        silent.close()
        healthy.close()
    finally:
        await hub.close()
        ctx.term()
    p99, base99 = percentile(rtts, 99) * 1000, percentile(base, 99) * 1000
    r.figure(
        flood_requests=flood,
        replies_dropped_not_reading=not_reading,
        replies_unroutable=unroutable,
        heartbeat_rtt_p99_ms=p99,
        heartbeat_rtt_p99_reading_flood_ms=base99,
        heartbeat_rtt_max_ms=max(rtts) * 1000,
        heartbeats_answered=len(rtts),
    )
    r.require(not_reading > 0, "the silent edge's queue never filled: nothing was tested")
    # a hub that waited on the silent edge would stall for seconds; the same flood from an edge
    # that reads sets the bar (the flood and the hub share this process's cores)
    r.require(
        p99 <= 2 * base99 + 500, f"heartbeat RTT p99 {p99:.1f} ms against {base99:.1f} ms with a reader"
    )
    r.latency(
        size, p99 <= 2 * base99 + 20, f"heartbeat RTT p99 {p99:.1f} ms (target {2 * base99 + 20:.0f} ms)"
    )
    r.require(unroutable >= 1, "a reply to an edge that left was not counted as unroutable")


def t12_stalled(size: Size, work: Path) -> Result:
    r = Report("T12", T12_NAME)
    keys = LinkKeys.make(work / "keys")
    _publisher_part(size, work, keys, r)
    asyncio.run(_router_part(size, keys, r))
    return r.result()


# --- T14 --------------------------------------------------------------------------------------


async def _t14(size: Size, work: Path, r: Report) -> None:
    keys = LinkKeys.make(work / "keys")
    hub = HubServer(keys, memory_sink=True)
    await asyncio.to_thread(hub.start)
    assert hub.pid is not None
    ctx = zmq.asyncio.Context()
    try:
        friend = Peer(ctx, hub.endpoint, keys.hub_public, keys.edge_secret_file)
        await friend.send(Hello("friend"))
        await friend.recv(10)
        # just over the codec's 4 MiB: reaches the hub, which answers with a typed error
        near = Peer(ctx, hub.endpoint, keys.hub_public, keys.edge_secret_file)
        await near.send_raw(b"\x00" * (5 * 1024 * 1024))
        near_reply = await near.recv(15)
        near.close()
        await asyncio.sleep(0.5)
        rss0 = rss_bytes(hub.pid)  # after the frame the hub did take in: the rest must add nothing
        big = Peer(ctx, hub.endpoint, keys.hub_public, keys.edge_secret_file)
        await big.wait_event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 15.0)
        await big.send_raw(b"\x00" * (100 * 1024 * 1024), timeout_s=30)
        dropped = await big.wait_event(zmq.EVENT_DISCONNECTED, 30.0)
        big_reply = await big.recv(2)
        big.close()
        # a big frame cut off by the network half way
        proxy = FaultProxy("127.0.0.1", hub.port)
        await proxy.start()
        proxy.up.cut_after = 8 * 1024 * 1024
        cut = Peer(ctx, proxy.endpoint, keys.hub_public, keys.edge_secret_file)
        await cut.send_raw(b"\x00" * (12 * 1024 * 1024), timeout_s=30)
        await asyncio.sleep(3.0)
        cut.close()
        await proxy.close()
        await asyncio.sleep(1.0)
        growth = (rss_bytes(hub.pid) - rss0) / 1e6
        await friend.send(Heartbeat(sent_at=1.0))
        alive = False
        for _ in range(20):
            got = await friend.recv(1)
            if isinstance(got, Heartbeat) and not got.from_hub:
                alive = True
                break
        friend.close()
    finally:
        ctx.term()
        await asyncio.to_thread(hub.stop)
    near_typed = isinstance(near_reply, Error) and near_reply.code == "oversized"
    r.figure(
        frame_mib=100,
        sender_disconnected=dropped,
        reply_to_big_frame=type(big_reply).__name__ if big_reply is not None else None,
        hub_rss_growth_mb=growth,
        hub_alive=alive,
        over_limit_frame_typed_error=near_typed,
        proxy_cuts=proxy.stats.cut,
    )
    r.require(dropped and big_reply is None, "the 100 MiB sender was not cut off")
    r.require(growth < 10.0, f"the hub's memory grew {growth:.1f} MB")
    r.require(alive, "the hub stopped answering after the big frames")
    r.control(near_typed, "the frame limit (a frame just over it reaches the hub's codec and is refused)")


def t14_big_frame(size: Size, work: Path) -> Result:
    r = Report("T14", T14_NAME)
    asyncio.run(_t14(size, work, r))
    return r.result()
