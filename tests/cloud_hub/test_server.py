"""The hub over real sockets with real CURVE and ZAP, on loopback."""

from __future__ import annotations

import asyncio
import pickle
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import zmq

from cloud_hub.server import Hub
from cloud_hub.sink import MemorySink
from shared import PROTOCOL_VERSION
from shared.keys import enroll_public_key, fingerprint, init_keys, load_public
from shared.wire import (
    ChatMessage,
    Error,
    Escalate,
    Heartbeat,
    Hello,
    Ready,
    Reply,
    SamplingParams,
    TelemetryAck,
    TelemetryBatch,
)
from tests.cloud_hub.helpers import Keys, RawClient, SlowBackend, make_keys, start_hub


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


@pytest.fixture
async def hub(keys: Keys) -> AsyncIterator[Hub]:
    hub = await start_hub(keys, max_frame=64 * 1024)
    yield hub
    await hub.close()


def _escalate(request_id: str, text: str = "ping", model: str = "echo") -> Escalate:
    return Escalate(request_id, model, [ChatMessage("user", text)], SamplingParams(), time.time() + 5)


async def test_unknown_key_gets_nothing_until_enrolled(tmp_path: Path, keys: Keys, hub: Hub) -> None:
    stranger_pub, stranger_sec = init_keys(tmp_path / "stranger")
    client = RawClient(hub.endpoint, keys.hub_public, stranger_sec)
    try:
        await client.send(Hello("stranger"))
        assert await client.recv(timeout=1.0) is None
        assert hub.edges == {}  # not a single frame got through to the hub
    finally:
        client.close()
    # The same key pair once enrolled (the hub re-reads the allow-list without a restart) is
    # served: the silence above was ZAP refusing the key, nothing else. libzmq does not retry a
    # connection refused at the handshake, so the key comes back on a fresh socket.
    enroll_public_key(stranger_pub, keys.enrolled_dir)
    await asyncio.sleep(0.3)
    client = RawClient(hub.endpoint, keys.hub_public, stranger_sec)
    try:
        await client.send(Hello("stranger"))
        assert isinstance(await client.recv(), Ready)
        assert fingerprint(load_public(stranger_pub)) in hub.edges
    finally:
        client.close()


async def test_client_with_wrong_hub_key_gets_nothing(tmp_path: Path, keys: Keys, hub: Hub) -> None:
    impostor_pub, _ = init_keys(tmp_path / "impostor")
    client = RawClient(hub.endpoint, load_public(impostor_pub), keys.edge_secret_file)
    try:
        await client.send(Hello("edge"))
        assert await client.recv(timeout=1.0) is None
        assert hub.edges == {}
    finally:
        client.close()


async def test_identity_comes_from_the_curve_key(keys: Keys, hub: Hub) -> None:
    client = RawClient(hub.endpoint, keys.hub_public, keys.edge_secret_file)
    try:
        await client.send(Hello("edge"))
        ready = await client.recv()
        assert isinstance(ready, Ready) and "echo" in ready.models
        # a payload claiming to be another tenant/edge does not change who the hub thinks we are
        await client.send(msgspec.structs.replace(_escalate("r1"), tenant="someone-else"))
        reply = await client.recv()
        assert isinstance(reply, Reply)
        assert reply.trace[0].detail["edge"] == fingerprint(load_public(keys.edge_public_file))
    finally:
        client.close()


async def test_bad_frames_get_typed_errors_and_others_are_served(
    tmp_path: Path, keys: Keys, hub: Hub
) -> None:
    marker = tmp_path / "unpickled"

    class Tripwire:
        def __reduce__(self) -> tuple[object, tuple[object, ...]]:
            return (Path.touch, (marker,))

    enc = msgspec.msgpack.Encoder()
    bad_frames: list[tuple[list[bytes], str]] = [
        ([b"\xc1garbage"], "malformed"),
        ([pickle.dumps(Tripwire())], "invalid"),
        ([pickle.dumps({"v": 1, "body": {"type": "heartbeat"}})], "invalid"),
        (
            [enc.encode({"v": 1, "body": {"type": "heartbeat", "sent_at": msgspec.msgpack.Ext(7, b"x")}})],
            "invalid",
        ),
        (
            [enc.encode({"v": PROTOCOL_VERSION + 1, "body": {"type": "heartbeat", "sent_at": 1.0}})],
            "unsupported_version",
        ),
        ([b"x" * (100 * 1024)], "oversized"),
        ([b"two", b"frames"], "malformed"),
        (
            [
                enc.encode(
                    {
                        "v": 1,
                        "body": {"type": "reply", "request_id": "x", "text": "", "model": "", "route": ""},
                    }
                )
            ],
            "unexpected_message",
        ),
    ]
    bad = RawClient(hub.endpoint, keys.hub_public, keys.edge_secret_file)
    good = RawClient(hub.endpoint, keys.hub_public, keys.edge_secret_file)
    try:

        async def good_traffic() -> list[str]:
            texts = []
            for i in range(20):
                await good.send(_escalate(f"g{i}", f"hello {i}"))
                reply = await good.recv()
                assert isinstance(reply, Reply)
                texts.append(reply.text)
            return texts

        async def bad_traffic() -> list[str]:
            codes = []
            for frames, _ in bad_frames:
                await bad.send_frames(frames)
                err = await bad.recv()
                assert isinstance(err, Error), err
                codes.append(err.code)
            return codes

        texts, codes = await asyncio.gather(good_traffic(), bad_traffic())
        assert texts == [f"hello {i}" for i in range(20)]
        assert codes == [code for _, code in bad_frames]
        assert not marker.exists()
        # the misbehaving client itself is still served afterwards
        await bad.send(Heartbeat(sent_at=1.5))
        assert await bad.recv() == Heartbeat(sent_at=1.5)
    finally:
        bad.close()
        good.close()


async def test_escalations_run_concurrently_beside_heartbeats(keys: Keys, hub: Hub) -> None:
    model = hub.registry.resolve("slow")
    assert model is not None and isinstance(model.backend, SlowBackend)
    client = RawClient(hub.endpoint, keys.hub_public, keys.edge_secret_file)
    try:
        for i in range(4):
            await client.send(_escalate(f"s{i}", model="slow"))
        await client.send(Heartbeat(sent_at=2.0))
        assert await client.recv() == Heartbeat(sent_at=2.0)  # not queued behind the slow model
        replies = [await client.recv() for _ in range(4)]
        assert sorted(r.request_id for r in replies if isinstance(r, Reply)) == ["s0", "s1", "s2", "s3"]
        assert model.backend.peak == 4  # all four were in the backend at the same time
    finally:
        client.close()


async def test_overload_is_refused_with_a_retryable_error(keys: Keys) -> None:
    hub = await start_hub(keys, max_inflight=2)
    client = RawClient(hub.endpoint, keys.hub_public, keys.edge_secret_file)
    try:
        for i in range(4):
            await client.send(_escalate(f"o{i}", model="slow"))
        answers = [await client.recv() for _ in range(4)]
        refused = [a for a in answers if isinstance(a, Error)]
        assert [(e.request_id, e.code, e.retryable) for e in refused] == [
            ("o2", "overloaded", True),
            ("o3", "overloaded", True),
        ]
        assert sorted(a.request_id for a in answers if isinstance(a, Reply)) == ["o0", "o1"]
        await client.send(_escalate("o4"))  # capacity is back once those finished
        assert isinstance(await client.recv(), Reply)
    finally:
        client.close()
        await hub.close()


async def test_telemetry_goes_to_the_sink_and_is_acked(keys: Keys) -> None:
    sink = MemorySink()
    hub = await start_hub(keys, sink=sink)
    client = RawClient(hub.endpoint, keys.hub_public, keys.edge_secret_file)
    try:
        batch = TelemetryBatch("b1", [{"route": "hub_oss"}, {"route": "edge_local"}])
        await client.send(batch)
        assert await client.recv() == TelemetryAck("b1", 2)
        await client.send(batch)  # a retry after a lost ack is acknowledged, not double-counted
        assert await client.recv() == TelemetryAck("b1", 2)
        assert sink.events_by_edge == {fingerprint(load_public(keys.edge_public_file)): 2}
    finally:
        client.close()
        await hub.close()


async def test_close_is_idempotent_and_frees_the_port(keys: Keys) -> None:
    hub = await start_hub(keys)
    endpoint = hub.endpoint
    await hub.close()
    await hub.close()
    with zmq.Context() as ctx, ctx.socket(zmq.ROUTER) as sock:
        sock.linger = 0
        sock.bind(endpoint)  # would raise EADDRINUSE if the hub still held it
