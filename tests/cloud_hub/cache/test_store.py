from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_hub.cache.store import GlobalCacheStore
from shared.cache_text import GlobalEntry, global_key


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[GlobalCacheStore]:
    s = GlobalCacheStore(tmp_path / "global.db", min_tenants=2)
    yield s
    s.close()


def offer(store: GlobalCacheStore, tenant: str, question: str, *, passed: bool = True) -> GlobalEntry | None:
    return store.offer(
        tenant=tenant, question=question, answer="Paris.", family="qwen", sys_hash="s", passed_checks=passed
    )


def test_shared_only_after_several_tenants_asked(store: GlobalCacheStore) -> None:
    assert offer(store, "t1", "What is the capital of France?") is None
    assert offer(store, "t1", "what is the capital of france") is None  # same tenant again
    assert store.changes_since(0) == ([], 0)
    entry = offer(store, "t2", "What is the capital of France?")
    assert entry is not None and entry.op == "put" and entry.version == 1
    assert entry.key == global_key("What is the capital of France?", "qwen", "s")
    assert offer(store, "t3", "What is the capital of France?") is None  # already shared
    assert store.changes_since(0) == ([entry], 1)


@pytest.mark.parametrize(
    "question", ["What is my password?", "What is the weather today?", "Latest news about Apple?"]
)
def test_personal_or_time_sensitive_questions_are_never_shared(
    store: GlobalCacheStore, question: str
) -> None:
    for tenant in ("t1", "t2", "t3"):
        assert offer(store, tenant, question) is None
    assert store.seq == 0


def test_answers_that_failed_checks_are_not_shared(store: GlobalCacheStore) -> None:
    for tenant in ("t1", "t2", "t3"):
        assert offer(store, tenant, "What is TCP?", passed=False) is None
    assert store.seq == 0


def test_retract_leaves_a_tombstone_for_lagging_edges(store: GlobalCacheStore) -> None:
    offer(store, "t1", "What is TCP?")
    put = offer(store, "t2", "What is TCP?")
    assert put is not None
    gone = store.retract(put.key)
    assert gone is not None and gone.op == "delete" and gone.version == 2
    assert store.retract(put.key) is None  # idempotent
    entries, seq = store.changes_since(0)
    assert seq == 2 and [e.op for e in entries] == ["delete"]
    assert store.changes_since(2) == ([], 2)


def test_wire_round_trip_rejects_unknown_ops() -> None:
    e = GlobalEntry(key="k", op="put", question="q", answer="a", family="f", sys_hash="s", version=3)
    assert GlobalEntry.from_wire(e.to_wire()) == e
    bad = dict(e.to_wire(), op="drop_table")
    with pytest.raises(Exception, match="unknown cache op"):
        GlobalEntry.from_wire(bad)
