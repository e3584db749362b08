from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from cloud_hub.cache.sharing import GlobalCache, shareable_question
from shared.config import GlobalCacheSettings, cache_endpoints
from shared.wire import ChatMessage, Escalate, Reply, SamplingParams

Q = ChatMessage(role="user", content="  What is TCP?  ")


def esc(
    *messages: ChatMessage, temperature: float = 0.0, seed: int | None = None, family: str = "auto"
) -> Escalate:
    return Escalate(
        request_id="r1",
        model="",
        messages=list(messages or (Q,)),
        params=SamplingParams(temperature=temperature, seed=seed),
        deadline=1e12,
        tenant="t-hash",
        cache_family=family,
    )


def reply(text: str = "A transport protocol.", finish: str = "stop") -> Reply:
    return Reply(request_id="r1", text=text, model="m", route="hub_oss", finish_reason=finish)


def test_only_deterministic_standalone_finished_answers_are_offered() -> None:
    assert shareable_question(esc(), reply()) == "What is TCP?"
    assert shareable_question(esc(seed=7, temperature=0.9), reply()) == "What is TCP?"
    system = ChatMessage(role="system", content="Be brief.")
    assert shareable_question(esc(system, Q), reply()) == "What is TCP?"
    assert shareable_question(esc(temperature=0.7), reply()) == ""  # one sample of many
    assert shareable_question(esc(family=""), reply()) == ""  # the edge did not ask for sharing
    assert shareable_question(esc(), reply(finish="length")) == ""  # truncated
    assert shareable_question(esc(), reply(text="  ")) == ""
    earlier = ChatMessage(role="assistant", content="...")
    follow_up = (Q, earlier, ChatMessage(role="user", content="And UDP?"))
    assert shareable_question(esc(*follow_up), reply()) == ""
    long = ChatMessage(role="user", content="Explain this: " + "x" * 700)
    assert shareable_question(esc(long), reply()) == ""


def test_tenants_count_per_edge_key(tmp_path: Path) -> None:
    cache = GlobalCache.open(GlobalCacheSettings(min_tenants=2), tmp_path)
    try:
        # the same tenant hash behind one edge key twice is one tenant; behind another key, a second
        assert asyncio.run(cache.observe(esc(), "edge-a", reply())) is None
        assert asyncio.run(cache.observe(esc(), "edge-a", reply())) is None
        entry = asyncio.run(cache.observe(esc(), "edge-b", reply("Something else.")))
        assert entry is not None and entry.family == "auto" and entry.answer == "A transport protocol."
        assert cache.store.seq == 1
    finally:
        cache.close()
        cache.close()


def test_cache_endpoints_sit_next_to_the_link() -> None:
    assert cache_endpoints("tcp://10.0.0.5:5555") == ("tcp://10.0.0.5:5556", "tcp://10.0.0.5:5557")
    assert cache_endpoints("ipc:///run/hub") == ("ipc:///run/hub.cache-pub", "ipc:///run/hub.cache-snap")
    for bad in ("tcp://127.0.0.1:0", "127.0.0.1:5555", "tcp://host"):
        with pytest.raises(ValueError):
            cache_endpoints(bad)


def test_a_bypassed_request_is_never_offered(tmp_path: Path) -> None:
    bypassed = msgspec.structs.replace(esc(), cache_bypass=True)
    assert shareable_question(bypassed, reply()) == ""
    cache = GlobalCache.open(GlobalCacheSettings(min_tenants=1), tmp_path)
    try:
        assert asyncio.run(cache.observe(bypassed, "edge-a", reply())) is None
        assert cache.offered == 0 and cache.store.seq == 0
        # the control: the same exchange without the flag is shared at once (one tenant suffices)
        assert asyncio.run(cache.observe(esc(), "edge-a", reply())) is not None
        assert cache.offered == 1 and cache.store.seq == 1
    finally:
        cache.close()
