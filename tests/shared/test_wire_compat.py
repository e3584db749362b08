"""Fields added to a wire struct with a default keep both directions working with older peers."""

from __future__ import annotations

import msgspec

from shared.wire import ChatMessage, Escalate, SamplingParams


class EscalateBeforeCacheBypass(msgspec.Struct, tag="escalate", frozen=True, omit_defaults=True):
    """``Escalate`` as a peer that predates ``cache_bypass`` declares it."""

    request_id: str
    model: str
    messages: list[ChatMessage]
    params: SamplingParams
    deadline: float
    stream: bool = False
    draft: str | None = None
    confidence: float | None = None
    quality_target: float | None = None
    tenant: str = ""
    cache_family: str = ""


def _escalate(*, cache_bypass: bool = False, cache_family: str = "") -> Escalate:
    messages = [ChatMessage("user", "hi")]
    return Escalate(
        "r1", "", messages, SamplingParams(), 1e9, cache_family=cache_family, cache_bypass=cache_bypass
    )


def test_cache_bypass_travels_only_when_set() -> None:
    plain = msgspec.msgpack.decode(msgspec.msgpack.encode(_escalate()))
    assert "cache_bypass" not in plain
    flagged = msgspec.msgpack.decode(msgspec.msgpack.encode(_escalate(cache_bypass=True)))
    assert flagged["cache_bypass"] is True


def test_old_and_new_peers_decode_each_other() -> None:
    new = msgspec.msgpack.encode(_escalate(cache_bypass=True, cache_family="qwen"))
    old = msgspec.msgpack.decode(new, type=EscalateBeforeCacheBypass)
    assert old.cache_family == "qwen" and old.request_id == "r1"
    back = msgspec.msgpack.decode(msgspec.msgpack.encode(old), type=Escalate)
    assert back.cache_bypass is False and back.cache_family == "qwen"
