"""HubLink against an in-process hub: real DEALER/ROUTER sockets, real CURVE, loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cloud_hub.server import Hub
from cloud_hub.sink import MemorySink
from edge_agent.hub_link import HubError, HubLink, HubTimeout, HubUnavailable
from shared.keys import enroll_public_key, init_keys
from shared.wire import ChatMessage, Escalate, Reply, ReplyChunk, SamplingParams, TelemetryAck, TelemetryBatch
from tests.cloud_hub.helpers import Keys, SlowBackend, make_keys, start_hub

HEARTBEAT_S = 0.2


def req(request_id: str, text: str = "hello edge", *, model: str = "echo", in_s: float = 5.0) -> Escalate:
    return Escalate(request_id, model, [ChatMessage("user", text)], SamplingParams(), time.time() + in_s)


async def wait_until(predicate: object, timeout: float = 5.0) -> float:
    started = time.monotonic()
    while not predicate():  # type: ignore[operator]
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


@pytest.fixture
async def hub(keys: Keys) -> AsyncIterator[Hub]:
    hub = await start_hub(keys, sink=MemorySink(), heartbeat_s=HEARTBEAT_S)
    yield hub
    await hub.close()


@pytest.fixture
async def link(keys: Keys, hub: Hub) -> AsyncIterator[HubLink]:
    link = HubLink(hub.endpoint, keys.hub_public, keys.edge_secret_file, heartbeat_s=HEARTBEAT_S)
    await link.start()
    await wait_until(lambda: link.connected)
    yield link
    await link.close()


async def test_start_returns_at_once_and_connects(keys: Keys, hub: Hub) -> None:
    link = HubLink(hub.endpoint, keys.hub_public, keys.edge_secret_file, heartbeat_s=HEARTBEAT_S)
    started = time.monotonic()
    await link.start()
    assert time.monotonic() - started < 0.05
    assert await wait_until(lambda: link.connected) < 3.0
    assert "echo" in link.hub_models
    await wait_until(lambda: link.rtt_s is not None)  # heartbeats are flowing and echoed
    await link.close()
    await link.close()
    assert not link.connected


async def test_escalate_round_trip(link: HubLink) -> None:
    reply = await link.escalate(req("r1", "what is two plus two"))
    assert isinstance(reply, Reply)
    assert (reply.request_id, reply.text, reply.route) == ("r1", "what is two plus two", "hub_oss")
    assert reply.cost_usd > 0 and reply.trace[0].detail["backend"] == "echo"


async def test_many_concurrent_escalations_are_matched_by_id(link: HubLink) -> None:
    replies = await asyncio.gather(*(link.escalate(req(f"c{i}", f"text {i}")) for i in range(50)))
    assert [r.text for r in replies] == [f"text {i}" for i in range(50)]


async def test_stream_yields_chunks_then_reply(link: HubLink) -> None:
    items = [item async for item in link.stream(req("s1", "a streamed answer"))]
    *chunks, final = items
    assert all(isinstance(c, ReplyChunk) for c in chunks) and len(chunks) == 3
    assert isinstance(final, Reply) and final.usage.completion_tokens == 3
    assert "".join(c.delta for c in chunks if isinstance(c, ReplyChunk)) == final.text == "a streamed answer"


async def test_error_replies_raise_hub_error(link: HubLink) -> None:
    with pytest.raises(HubError) as unknown:
        await link.escalate(req("e1", model="no-such-model"))
    assert unknown.value.code == "unknown_model" and not unknown.value.retryable
    with pytest.raises(HubError) as flaky:
        await link.escalate(req("e2", model="flaky"))
    assert flaky.value.code == "backend_error" and flaky.value.retryable
    seen: list[object] = []
    with pytest.raises(HubError) as broken:
        async for item in link.stream(req("e3", model="broken")):
            seen.append(item)
    assert broken.value.code == "backend_error" and not broken.value.retryable
    assert [c.delta for c in seen if isinstance(c, ReplyChunk)] == ["partial"]


async def test_deadline_exceeded(link: HubLink) -> None:
    with pytest.raises(HubTimeout):
        await link.escalate(req("d1", model="slow", in_s=0.1))  # the slow model takes 0.3 s
    with pytest.raises(HubTimeout) as past:
        await link.escalate(req("d2", in_s=-1.0))
    assert past.value.code == "deadline_exceeded"
    with pytest.raises(HubTimeout):
        async for _ in link.stream(req("d3", model="slow", in_s=0.1)):
            pass
    # the link is fine afterwards, and a late answer to d1 is not mistaken for anything else
    await asyncio.sleep(0.3)
    assert (await link.escalate(req("d4", "still here"))).text == "still here"


async def test_oversized_request_is_refused_before_sending(keys: Keys, hub: Hub) -> None:
    link = HubLink(
        hub.endpoint, keys.hub_public, keys.edge_secret_file, heartbeat_s=HEARTBEAT_S, max_frame=4096
    )
    await link.start()
    try:
        await wait_until(lambda: link.connected)
        with pytest.raises(HubError) as info:
            await link.escalate(req("big", "x" * 5000))
        assert info.value.code == "oversized" and not info.value.retryable
        assert (await link.escalate(req("small"))).text == "hello edge"
    finally:
        await link.close()


async def test_abandoned_calls_are_cancelled_on_the_hub(link: HubLink, hub: Hub) -> None:
    model = hub.registry.resolve("slow")
    assert model is not None and isinstance(model.backend, SlowBackend)
    slow = model.backend
    stream = link.stream(req("ab1", "one two three four five", model="slow", in_s=30))
    async for _ in stream:
        break  # the HTTP client went away after the first chunk
    await stream.aclose()
    await wait_until(lambda: slow.cancelled == 1, timeout=1.0)
    call = asyncio.ensure_future(link.escalate(req("ab2", model="slow", in_s=30)))
    await asyncio.sleep(0.05)
    call.cancel()
    await wait_until(lambda: slow.cancelled == 2, timeout=1.0)
    assert (await link.escalate(req("ab3"))).text == "hello edge"


async def test_duplicate_request_id_is_refused(link: HubLink) -> None:
    first = asyncio.ensure_future(link.escalate(req("dup", model="slow")))
    await asyncio.sleep(0.01)
    with pytest.raises(ValueError, match="already in flight"):
        await link.escalate(req("dup"))
    assert (await first).request_id == "dup"


async def test_telemetry_is_acked(link: HubLink, hub: Hub) -> None:
    ack = await link.send_telemetry(TelemetryBatch("t1", [{"route": "edge_local"}] * 3), timeout=2.0)
    assert ack == TelemetryAck("t1", 3)
    assert isinstance(hub.sink, MemorySink) and sum(hub.sink.events_by_edge.values()) == 3


async def test_no_hub_fails_fast(keys: Keys) -> None:
    link = HubLink("tcp://127.0.0.1:9", keys.hub_public, keys.edge_secret_file, heartbeat_s=HEARTBEAT_S)
    await link.start()
    try:
        await asyncio.sleep(0.3)
        assert not link.connected
        started = time.monotonic()
        with pytest.raises(HubUnavailable):
            await link.escalate(req("n1"))
        with pytest.raises(HubUnavailable):
            await link.send_telemetry(TelemetryBatch("t", []), timeout=1.0)
        assert time.monotonic() - started < 0.1
    finally:
        await link.close()


async def test_close_fails_calls_in_flight(keys: Keys, hub: Hub) -> None:
    link = HubLink(hub.endpoint, keys.hub_public, keys.edge_secret_file, heartbeat_s=HEARTBEAT_S)
    await link.start()
    await wait_until(lambda: link.connected)
    pending = asyncio.ensure_future(link.escalate(req("p1", model="slow")))
    await asyncio.sleep(0.05)
    await link.close()
    with pytest.raises(HubUnavailable):
        await pending


async def test_edge_enrolled_after_start_connects_without_restart(
    tmp_path: Path, keys: Keys, hub: Hub
) -> None:
    late_pub, late_sec = init_keys(tmp_path / "late-edge")
    link = HubLink(hub.endpoint, keys.hub_public, late_sec, heartbeat_s=HEARTBEAT_S)
    link.reopen_after_s = 0.5
    await link.start()
    try:
        await asyncio.sleep(0.5)
        assert not link.connected  # refused by the allow-list
        enroll_public_key(late_pub, keys.enrolled_dir)
        await wait_until(lambda: link.connected, timeout=5.0)
        assert (await link.escalate(req("late"))).text == "hello edge"
    finally:
        await link.close()
