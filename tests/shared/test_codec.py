from __future__ import annotations

import pickle
from pathlib import Path

import msgspec
import pytest

from shared import PROTOCOL_VERSION
from shared.codec import Codec, DecodeFailure
from shared.wire import (
    Body,
    Cancel,
    ChatMessage,
    Classification,
    Error,
    Escalate,
    Heartbeat,
    Hello,
    Ready,
    Reply,
    ReplyChunk,
    SamplingParams,
    TelemetryAck,
    TelemetryBatch,
    TraceStep,
    Usage,
)

MESSAGES: list[Body] = [
    Hello("edge/1", ["m"]),
    Ready("hub/1", 2.0, ["a", "b"]),
    Heartbeat(123.5),
    Escalate(
        "r1",
        "m",
        [ChatMessage("system", "be brief"), ChatMessage("user", "hi")],
        SamplingParams(max_tokens=5, stop=["\n"], seed=3),
        deadline=1e9,
        stream=True,
        draft="hello",
        confidence=0.4,
        classification=Classification(task="code", success={"oss": 0.9}),
    ),
    Reply(
        "r1", "hi", "m", "hub_oss", usage=Usage(3, 4), cost_usd=0.1, trace=[TraceStep("hub_oss", "answer")]
    ),
    ReplyChunk("r1", 0, "h"),
    Cancel("r1"),
    Error("r1", "backend_error", "boom", retryable=True),
    TelemetryBatch("b1", [{"k": 1, "s": "x", "f": 0.5, "n": None, "b": True}]),
    TelemetryAck("b1", 1),
]


@pytest.mark.parametrize("body", MESSAGES, ids=lambda b: type(b).__name__)
def test_round_trip(body: Body) -> None:
    codec = Codec()
    assert codec.decode(codec.encode(body)) == body


def _code(codec: Codec, frame: bytes) -> str:
    with pytest.raises(DecodeFailure) as info:
        codec.decode(frame)
    return info.value.code


def test_oversized_is_refused_both_ways() -> None:
    codec = Codec(max_frame=1024)
    big = TelemetryBatch("b", [{"x": "y" * 2000}])
    with pytest.raises(DecodeFailure) as info:
        codec.encode(big)
    assert info.value.code == "oversized"
    assert _code(codec, Codec().encode(big)) == "oversized"


class _Tripwire:
    """Unpickling this creates a file: proof of whether a decoder ever ran pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.touch, (self.marker,))


def test_pickle_frames_are_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    codec = Codec()
    for frame in (pickle.dumps(_Tripwire(marker)), pickle.dumps({"v": 1, "body": {}}, protocol=2)):
        assert _code(codec, frame) in {"malformed", "invalid"}
    assert not marker.exists()
    # the tripwire is live: it does fire under pickle
    pickle.loads(pickle.dumps(_Tripwire(marker)))  # noqa: S301
    assert marker.exists()


def test_ext_types_are_refused_anywhere() -> None:
    enc = msgspec.msgpack.Encoder()
    ext = msgspec.msgpack.Ext(1, b"payload")
    codec = Codec()
    frames = [
        enc.encode(ext),
        enc.encode({"v": ext, "body": {"type": "heartbeat", "sent_at": 1.0}}),
        enc.encode({"v": PROTOCOL_VERSION, "body": {"type": "heartbeat", "sent_at": ext}}),
        enc.encode(
            {"v": PROTOCOL_VERSION, "body": {"type": "telemetry", "batch_id": "b", "events": [{"a": ext}]}}
        ),
    ]
    for frame in frames:
        assert _code(codec, frame) in {"malformed", "invalid"}


def test_version_tag_and_garbage_failures_are_typed() -> None:
    enc = msgspec.msgpack.Encoder()
    codec = Codec()
    beat = {"type": "heartbeat", "sent_at": 1.0}
    assert _code(codec, enc.encode({"v": PROTOCOL_VERSION + 1, "body": beat})) == "unsupported_version"
    assert _code(codec, enc.encode({"v": PROTOCOL_VERSION, "body": {"type": "launch_missiles"}})) == "invalid"
    assert _code(codec, enc.encode({"v": PROTOCOL_VERSION, "body": {"type": "heartbeat"}})) == "invalid"
    assert _code(codec, b"\xc1") == "malformed"  # 0xc1 is never valid msgpack
    assert _code(codec, Codec().encode(Heartbeat(1.0))[:-3]) == "malformed"  # truncated
