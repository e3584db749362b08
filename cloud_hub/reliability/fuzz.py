"""T17: malformed frames cost the hub a typed error and nothing else, by the million.

Two stages. In process: valid frames of every message type (built from the wire structs' own type
information, so a new message is fuzzed without a line here) are mutated, truncated, spliced,
given absurd lengths and deep nesting, and decoded; every input must come out as a message or a
``DecodeFailure``, within 100 ms, without the process growing. Over the socket: the same kind of
frames go to a hub process over CURVE; it must answer or refuse each one, never hit an
unexpected exception in its handler, stay within its memory budget and keep answering heartbeats.
The test suite adds Hypothesis on top (``tests/shared/test_codec_fuzz.py``).
"""

from __future__ import annotations

import asyncio
import random
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import zmq
import zmq.asyncio

from cloud_hub.reliability.harness import Peer
from shared.codec import Codec, DecodeFailure
from shared.hubproc import HubServer, LinkKeys
from shared.reliability import Report, Result, Size, pick, rss_bytes
from shared.wire import Body, Heartbeat, Hello

NAME = "codec fuzzing in process and over the socket"
BODY_TYPES: tuple[type[Any], ...] = typing.get_args(Body)
_INTERESTING = (
    0x00,
    0x7F,
    0x80,
    0x90,
    0xC0,
    0xC1,
    0xC2,
    0xC4,
    0xCC,
    0xCF,
    0xD3,
    0xD4,
    0xD9,
    0xDC,
    0xDD,
    0xDE,
    0xDF,
    0xFF,
)
_HUGE_HEADERS = (
    b"\xdd\xff\xff\xff\xff",
    b"\xdf\xff\xff\xff\xff",
    b"\xdb\xff\xff\xff\xff",
    b"\xc6\xff\xff\xff\xff",
)


_SCALARS: dict[type[Any], Callable[[random.Random], Any]] = {
    msgspec.inspect.StrType: lambda rng: "".join(
        rng.choice("abc xyz\u00e9\u4e2d\U0001f600") for _ in range(rng.randint(0, 12))
    ),
    msgspec.inspect.BoolType: lambda rng: rng.random() < 0.5,
    msgspec.inspect.IntType: lambda rng: rng.choice(
        [0, 1, -1, 2**31, 2**63 - 1, -(2**63), rng.randint(-1000, 1000)]
    ),
    msgspec.inspect.FloatType: lambda rng: rng.choice([0.0, -1.5, 1e300, rng.random()]),
    msgspec.inspect.NoneType: lambda rng: None,
    msgspec.inspect.BytesType: lambda rng: rng.randbytes(rng.randint(0, 16)),
}


def _value(rng: random.Random, info: msgspec.inspect.Type, depth: int = 0) -> Any:
    """A random value of the type ``info`` describes (msgspec's own type introspection)."""
    i = msgspec.inspect
    scalar = _SCALARS.get(type(info))
    if scalar is not None:
        return scalar(rng)
    width = rng.randint(0, 3 if depth < 3 else 0)
    if isinstance(info, i.UnionType):
        return _value(rng, rng.choice(info.types), depth)
    if isinstance(info, i.LiteralType):
        return rng.choice(info.values)
    if isinstance(info, i.ListType):
        return [_value(rng, info.item_type, depth + 1) for _ in range(width)]
    if isinstance(info, i.DictType):
        return {f"k{n}": _value(rng, info.value_type, depth + 1) for n in range(width)}
    if isinstance(info, i.StructType):
        fields = [f for f in info.fields if f.required or rng.random() < 0.5]
        return info.cls(**{f.name: _value(rng, f.type, depth + 1) for f in fields})
    # a new field type on the wire: teach the generator rather than fuzz around it
    raise TypeError(f"no generator for wire type {info!r}")


def random_body(rng: random.Random, cls: type[Any]) -> Body:
    body: Body = _value(rng, msgspec.inspect.type_info(cls))
    return body


def seeds(rng: random.Random, per_type: int = 8) -> list[bytes]:
    codec = Codec(max_frame=1 << 24)
    out = []
    for cls in BODY_TYPES:
        for _ in range(per_type):
            out.append(codec.encode(random_body(rng, cls)))
    return out


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        pos = rng.randrange(len(buf) + 1) if buf else 0
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[min(pos, len(buf) - 1)] = rng.choice(_INTERESTING)
        elif op == 2:
            del buf[pos:]
        elif op == 3:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 4 and buf:
            end = min(len(buf), pos + rng.randint(1, 32))
            del buf[pos:end]
        elif op == 5:
            other = rng.choice(corpus)
            cut = rng.randrange(len(other) + 1)
            buf = buf[:pos] + bytearray(other[cut:])
        elif op == 6:
            buf[pos:pos] = rng.choice(_HUGE_HEADERS)
        elif op == 7:
            buf = bytearray(b"\x91" * rng.randint(100, 5000)) + buf
        else:
            buf = bytearray(rng.randbytes(rng.randint(0, 64)))
    return bytes(buf)


def fuzz_decode(n: int, rng: random.Random, decode: Callable[[bytes], object]) -> dict[str, Any]:
    """Decode ``n`` mutated frames; counts and the worst cases."""
    corpus = seeds(rng)
    crashes: list[str] = []
    accepted = refused = 0
    slowest = 0.0
    rss0 = rss_bytes()
    for k in range(n):
        frame = mutate(rng, corpus[k % len(corpus)], corpus)
        t0 = time.perf_counter()
        try:
            decode(frame)
            accepted += 1
        except DecodeFailure:
            refused += 1
        except Exception as exc:  # anything but a typed refusal is a crash of the receiver
            if len(crashes) < 5:
                crashes.append(f"{type(exc).__name__}: {exc} on {frame[:40]!r}")
            else:
                crashes.append("")
        slowest = max(slowest, time.perf_counter() - t0)
    return {
        "inputs": n,
        "accepted": accepted,
        "refused": refused,
        "crashes": len(crashes),
        "examples": [c for c in crashes if c],
        "slowest_ms": slowest * 1000,
        "rss_growth_mb": (rss_bytes() - rss0) / 1e6,
    }


def round_trips(rng: random.Random, per_type: int) -> int:
    """Valid bodies of every type that do not come back equal from encode → decode."""
    codec = Codec(max_frame=1 << 24)
    bad = 0
    for cls in BODY_TYPES:
        for _ in range(per_type):
            body = random_body(rng, cls)
            bad += codec.decode(codec.encode(body)) != body
    return bad


async def _socket_fuzz(n: int, work: Path, rng: random.Random) -> dict[str, Any]:
    keys = LinkKeys.make(work / "keys")
    hub = HubServer(keys, memory_sink=True)
    await asyncio.to_thread(hub.start)
    assert hub.pid is not None
    corpus = seeds(rng)
    ctx = zmq.asyncio.Context()
    answers = 0
    try:
        peer = Peer(ctx, hub.endpoint, keys.hub_public, keys.edge_secret_file)
        await peer.send(Hello("fuzzer"))
        await peer.recv(10)
        # two halves: the first sets the hub's high-water mark of memory (queues, allocator
        # arenas), the second must not add to it; a leak grows with every frame
        marks = [rss_bytes(hub.pid)]
        for half in (n // 2, n - n // 2):
            for k in range(half):
                await peer.send_raw(mutate(rng, corpus[k % len(corpus)], corpus))
                while await peer.socket.poll(0):
                    await peer.socket.recv()
                    answers += 1
                if k % 500 == 499:
                    await asyncio.sleep(0.01)  # let the hub's answers drain
            await asyncio.sleep(1.0)
            marks.append(rss_bytes(hub.pid))
        peak = (max(marks) - marks[0]) / 1e6
        growth = (marks[2] - marks[1]) / 1e6
        await peer.send(Heartbeat(sent_at=2.0))
        alive = False
        reader = Codec(max_frame=1 << 24)
        end = time.monotonic() + 30
        while not alive and time.monotonic() < end and await peer.socket.poll(1000):
            got = reader.decode(await peer.socket.recv())  # answers to the fuzz queue ahead of it
            answers += 1
            alive = isinstance(got, Heartbeat) and got.sent_at == 2.0 and not got.from_hub
        peer.close()
    finally:
        ctx.term()
        log = hub.output()
        await asyncio.to_thread(hub.stop)
    return {
        "frames": n,
        "answers": answers,
        "alive": alive,
        "handler_exceptions": log.count("could not be handled") + log.count("Traceback"),
        "rss_growth_mb": growth,
        "rss_peak_mb": peak,
        "log_lines": log.count("\n"),
    }


def t17_fuzz(size: Size, work: Path) -> Result:
    r = Report("T17", NAME)
    rng = random.Random(17)
    bad_trips = round_trips(rng, pick(size, 50, 200, 1000))
    stats = fuzz_decode(pick(size, 20_000, 300_000, 1_200_000), rng, Codec().decode)
    sock = asyncio.run(_socket_fuzz(pick(size, 2_000, 50_000, 1_000_000), work, rng))
    r.figure(
        round_trip_failures=bad_trips,
        inputs_fuzzed=stats["inputs"],
        accepted=stats["accepted"],
        refused_typed=stats["refused"],
        crashes=stats["crashes"],
        slowest_ms=stats["slowest_ms"],
        rss_growth_mb=stats["rss_growth_mb"],
        socket_frames=sock["frames"],
        socket_answers=sock["answers"],
        hub_handler_exceptions=sock["handler_exceptions"],
        hub_rss_peak_growth_mb=sock["rss_peak_mb"],
        hub_rss_growth_second_half_mb=sock["rss_growth_mb"],
        hub_log_lines=sock["log_lines"],
        hub_alive=sock["alive"],
    )
    r.require(bad_trips == 0, f"{bad_trips} valid messages did not survive encode → decode")
    r.require(stats["crashes"] == 0, "untyped exceptions: " + "; ".join(stats["examples"]))
    r.latency(size, stats["slowest_ms"] < 100, f"an input took {stats['slowest_ms']:.1f} ms to refuse")
    r.require(stats["rss_growth_mb"] < 50, f"decoding grew the process by {stats['rss_growth_mb']:.1f} MB")
    r.require(sock["handler_exceptions"] == 0, "the hub's handler raised on a fuzzed frame")
    r.require(sock["alive"], "the hub stopped answering after the fuzzed frames")
    r.require(
        sock["rss_growth_mb"] < 20, f"the hub kept growing: {sock['rss_growth_mb']:.1f} MB in the second half"
    )
    r.require(sock["log_lines"] < 1000, f"{sock['log_lines']} hub log lines: a fuzzing peer can fill the log")
    return r.result()
