"""A repeated hit is served from the rows kept in memory, and whatever changes a key's rows makes
the next hit read them afresh: a new answer, an eviction, a tenant's erasure, another process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.cache.db import VERSION_MAX_AGE_S, Database
from edge_agent.cache.exact import ExactCache
from edge_agent.cache.keys import CacheRequest
from shared.config import CacheSettings
from tests.edge_agent.cache.test_forms import chat_request

NOW = 1_800_000_000.0


def req(text: str, *, now: float = NOW) -> CacheRequest:
    return chat_request(text, tenant="acme", now=now)


@pytest.fixture()
def cache(tmp_path: Path) -> Iterator[ExactCache]:
    with Database(tmp_path / "cache.db") as db:
        yield ExactCache(db, CacheSettings())


def _served(cache: ExactCache, text: str, now: float = NOW) -> str | None:
    found = cache.get(req(text, now=now)).answer
    return None if found is None else found.text


def test_a_repeated_hit_reads_nothing(cache: ExactCache) -> None:
    cache.put(req("What is a monad?"), "A monoid.", "m")
    assert _served(cache, "What is a monad?") == "A monoid."
    statements: list[str] = []
    with cache.db.snapshot() as conn:
        conn.set_trace_callback(statements.append)
    assert _served(cache, "What is a monad?") == "A monoid."
    assert statements == []


def test_a_new_answer_for_the_key_is_served_next(cache: ExactCache) -> None:
    cache.put(req("What is a monad?"), "A monoid.", "m")
    assert _served(cache, "What is a monad?") == "A monoid."
    cache.put(req("What is a monad?"), "A monoid in the category of endofunctors.", "m")
    assert _served(cache, "What is a monad?") == "A monoid in the category of endofunctors."


def test_an_evicted_entry_is_not_served_from_memory(tmp_path: Path) -> None:
    with Database(tmp_path / "small.db") as db:
        cache = ExactCache(db, CacheSettings(max_entries=1))
        cache.put(req("What is a monad?"), "A monoid.", "m")
        assert _served(cache, "What is a monad?") == "A monoid."
        cache.put(req("What is a functor?", now=NOW + 1), "A mapping.", "m")  # evicts the first
        assert _served(cache, "What is a monad?") is None


def test_an_erased_tenant_is_not_served_from_memory(cache: ExactCache) -> None:
    asked = req("What is a monad?")
    cache.put(asked, "A monoid.", "m")
    assert _served(cache, "What is a monad?") == "A monoid."
    assert cache.clear_tenant(asked.tenant_scope) == 1
    assert _served(cache, "What is a monad?") is None


def test_another_process_answer_is_served_after_its_commit(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    with Database(path) as mine_db, Database(path) as other_db:
        mine, other = ExactCache(mine_db, CacheSettings()), ExactCache(other_db, CacheSettings())
        mine.put(req("What is a monad?"), "A monoid.", "m")
        assert _served(mine, "What is a monad?") == "A monoid."
        other.put(req("What is a monad?"), "A burrito.", "m")  # replaces the greedy answer
        time.sleep(2 * VERSION_MAX_AGE_S)  # how soon another process's commit is looked for
        assert _served(mine, "What is a monad?") == "A burrito."


def test_an_expired_entry_is_not_served_from_memory(cache: ExactCache) -> None:
    cache.put(req("What is a monad?"), "A monoid.", "m")
    assert _served(cache, "What is a monad?") == "A monoid."
    later = NOW + cache.settings.exact_ttl_s + 1
    assert _served(cache, "What is a monad?", now=later) is None


def test_a_time_sensitive_question_gets_the_hour_in_its_key_every_time(cache: ExactCache) -> None:
    cache.put(req("What is the weather today?"), "Sunny.", "m")
    assert _served(cache, "What is the weather today?", now=NOW + 60) == "Sunny."
    assert _served(cache, "What is the weather today?", now=NOW + 3 * 3600) is None
