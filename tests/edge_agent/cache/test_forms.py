"""The key and form filters over a real cache file: a miss reads nothing, while every stored key, form,
alias, or another process's entry is still found."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.cache.db import VERSION_MAX_AGE_S
from edge_agent.cache.keys import CacheRequest
from edge_agent.cache.service import CacheService
from shared.cache_text import GlobalEntry
from shared.config import CacheSettings
from shared.embedding import Embedder
from shared.wire import ChatMessage, SamplingParams

NOW = 1_800_000_000.0


def chat_request(text: str, tenant: str, now: float = NOW) -> CacheRequest:
    """A greedy single-question chat request of ``tenant``, as the cache keys it."""
    return CacheRequest(
        tenant=tenant,
        model="qwen2.5-coder-0.5b-instruct",
        messages=(ChatMessage(role="user", content=text),),
        params=SamplingParams(temperature=0.0),
        now=now,
    )


def req(text: str, tenant: str = "a") -> CacheRequest:
    return chat_request(text, tenant)


@pytest.fixture()
def service(tmp_path: Path, embedder: Embedder) -> Iterator[CacheService]:
    with CacheService(tmp_path / "cache.db", CacheSettings(), embedder=embedder) as svc:
        yield svc


class CountingReads:
    """Counts the statements run on the thread's read-only connection."""

    def __init__(self, service: CacheService) -> None:
        self.statements: list[str] = []
        with service.db.snapshot() as conn:
            conn.set_trace_callback(self.statements.append)


def test_a_form_never_stored_misses_without_reading_the_file(service: CacheService) -> None:
    sem = service.semantic
    assert sem is not None
    sem.put(req("Which planet is known as the red planet?"), "Mars.", "m")
    reads = CountingReads(service)
    missed = sem.lookup_form(req("What is the tallest mountain on Earth?"))
    assert missed.answer is None and missed.reason == "identical_only"
    assert reads.statements == []
    hit = sem.lookup_form(req("which planet is known as the red planet"))  # another form of it
    assert hit.answer is not None and hit.answer.text == "Mars." and reads.statements


def test_the_filter_keeps_tenants_apart(service: CacheService) -> None:
    sem = service.semantic
    assert sem is not None
    sem.put(req("Which planet is known as the red planet?", tenant="a"), "Mars.", "m")
    assert sem.lookup_form(req("Which planet is known as the red planet?", tenant="b")).answer is None


def test_an_alias_from_the_hub_is_found(service: CacheService) -> None:
    sem = service.semantic
    assert sem is not None
    asked = req("How does a blog get more visitors?")
    alias = GlobalEntry(
        key="alias-1", question="How does a blog get more visitors?", answer="Write often.",
        family=asked.family, domain="general", version=1, op="put", kind="alias",
        tenant=asked.tenant_scope, sys_hash=asked.partition_hash,
    )  # fmt: skip
    sem.apply_global([alias], 1, NOW)
    found = sem.lookup_form(asked)
    assert found.answer is not None and found.answer.text == "Write often." and found.reason == "alias"


def test_another_process_entry_is_found_after_its_commit(tmp_path: Path, embedder: Embedder) -> None:
    path = tmp_path / "shared.db"
    with CacheService(path, CacheSettings(), embedder=embedder) as mine:
        assert mine.semantic is not None
        asked = req("What is the boiling point of water?")
        assert mine.semantic.lookup_form(asked).answer is None
        with CacheService(path, CacheSettings(), embedder=embedder) as other:  # its own connection
            assert other.semantic is not None
            other.semantic.put(asked, "100 °C at sea level.", "m")
        time.sleep(2 * VERSION_MAX_AGE_S)  # how soon another process's commit is looked for
        found = mine.semantic.lookup_form(asked)
        assert found.answer is not None and found.answer.text == "100 °C at sea level."


def test_an_evicted_form_costs_a_read_and_still_misses(tmp_path: Path, embedder: Embedder) -> None:
    settings = CacheSettings(max_entries=1)
    with CacheService(tmp_path / "small.db", settings, embedder=embedder) as svc:
        sem = svc.semantic
        assert sem is not None
        sem.put(req("Which planet is known as the red planet?"), "Mars.", "m")
        sem.put(req("What is the tallest mountain on Earth?"), "Everest.", "m")  # evicts the first
        assert sem.count() == (1, 1)
        assert sem.lookup_form(req("Which planet is known as the red planet?")).answer is None
        assert sem.lookup_form(req("What is the tallest mountain on Earth?")).answer is not None


def test_an_exact_key_never_stored_misses_without_reading_the_file(service: CacheService) -> None:
    service.store_exact(req("Which planet is known as the red planet?"), "Mars.", "m")
    reads = CountingReads(service)
    missed = service.lookup_exact(req("What is the tallest mountain on Earth?"))
    assert missed.answer is None and reads.statements == []
    hit = service.lookup_exact(req("Which planet is known as the red planet?"))
    assert hit.answer is not None and hit.answer.text == "Mars." and reads.statements


def test_another_process_exact_entry_is_found_after_its_commit(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    with CacheService(path, CacheSettings()) as mine:
        asked = req("What is the boiling point of water?")
        assert mine.lookup_exact(asked).answer is None
        with CacheService(path, CacheSettings()) as other:  # its own connection
            assert other.store_exact(asked, "100 °C at sea level.", "m")
        time.sleep(2 * VERSION_MAX_AGE_S)  # how soon another process's commit is looked for
        found = mine.lookup_exact(req("What is the boiling point of water?"))
        assert found.answer is not None and found.answer.text == "100 °C at sea level."


def test_exact_stores_of_one_turn_share_one_transaction(service: CacheService) -> None:
    rows = [(req(f"Question number {i}?"), f"Answer {i}.", "m") for i in range(5)]
    commits: list[str] = []
    service.db.conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    assert service.store_exact_many([*rows, (req("An empty answer?"), "  ", "m")]) == [True] * 5 + [False]
    service.db.conn.set_trace_callback(None)
    assert commits == ["COMMIT"]
    for asked, answer, _ in rows:
        found = service.lookup_exact(req(asked.last_user))
        assert found.answer is not None and found.answer.text == answer
