"""The fault proxy against a plain TCP echo server: each fault does what it says, at runtime."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest

from shared.faultproxy import FaultProxy


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    p = FaultProxy("127.0.0.1", port)
    await p.start()
    yield p
    await p.close()
    server.close()
    await server.wait_closed()


async def _roundtrip(p: FaultProxy, data: bytes, timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
    try:
        writer.write(data)
        await writer.drain()
        got = b""
        while len(got) < len(data):
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                break
            got += chunk
        return got
    finally:
        writer.close()


async def test_forwards_both_ways_unchanged(proxy: FaultProxy) -> None:
    data = bytes(range(256)) * 1000
    assert await _roundtrip(proxy, data) == data
    assert proxy.stats.bytes_up == proxy.stats.bytes_down == len(data)


async def test_latency_delays_each_direction(proxy: FaultProxy) -> None:
    proxy.up.latency_s = proxy.down.latency_s = 0.15
    t0 = time.monotonic()
    assert await _roundtrip(proxy, b"ping") == b"ping"
    assert time.monotonic() - t0 >= 0.3


async def test_bandwidth_limits_the_rate(proxy: FaultProxy) -> None:
    proxy.down.bandwidth_bps = 200_000
    t0 = time.monotonic()
    assert len(await _roundtrip(proxy, b"x" * 100_000)) == 100_000
    assert time.monotonic() - t0 >= 0.4  # 100 kB at 200 kB/s, minus one slice's slack


async def test_drop_after_discards_the_rest_silently(proxy: FaultProxy) -> None:
    proxy.down.drop_after = 10
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"0123456789abcdef")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(100), 2) == b"0123456789"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(100), 0.3)
    writer.close()
    assert proxy.stats.dropped_down == 6


async def test_cut_resets_open_connections_and_new_ones_work(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"hi")
    assert await reader.read(10) == b"hi"
    assert proxy.cut() == 1
    with pytest.raises(ConnectionError):
        for _ in range(50):
            if not await asyncio.wait_for(reader.read(10), 2):
                raise ConnectionResetError("closed")
    writer.close()
    assert await _roundtrip(proxy, b"again") == b"again"


async def test_a_black_hole_accepts_and_never_answers_until_healed(proxy: FaultProxy) -> None:
    proxy.partition()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"anyone?")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(10), 0.3)
    writer.close()
    proxy.heal()
    assert await _roundtrip(proxy, b"back") == b"back"


async def test_refused_connections_are_reset(proxy: FaultProxy) -> None:
    proxy.refuse_new = True
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    with pytest.raises(ConnectionResetError):  # an RST, as from a host that refuses
        await asyncio.wait_for(reader.read(10), 2)
    writer.close()
    assert proxy.stats.refused == 1


def test_runs_in_its_own_thread_for_blocking_callers() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        p = FaultProxy("127.0.0.1", listener.getsockname()[1]).start_in_thread()
        try:
            with socket.create_connection(("127.0.0.1", p.port), timeout=5) as client:
                server, _ = listener.accept()
                with server:
                    client.sendall(b"through")
                    assert server.recv(10) == b"through"
            assert p.endpoint == f"tcp://127.0.0.1:{p.port}"
        finally:
            p.stop()
