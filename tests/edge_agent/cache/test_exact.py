from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.cache.db import Database
from edge_agent.cache.exact import SCHEMA, ExactCache
from edge_agent.cache.keys import CacheRequest
from shared.config import CacheSettings
from shared.wire import ChatMessage, SamplingParams

NOW = 1_800_000_000.0


def req(
    text: str,
    tenant: str = "acme",
    *,
    system: str | None = None,
    temperature: float = 0.0,
    now: float = NOW,
    model: str = "qwen2.5-coder-0.5b-instruct",
) -> CacheRequest:
    msgs = [ChatMessage(role="system", content=system)] if system else []
    msgs.append(ChatMessage(role="user", content=text))
    return CacheRequest(
        tenant=tenant,
        model=model,
        messages=tuple(msgs),
        params=SamplingParams(temperature=temperature),
        now=now,
    )


@pytest.fixture()
def cache(tmp_path: Path) -> Iterator[ExactCache]:
    with Database(tmp_path / "cache.db") as db:
        yield ExactCache(db, CacheSettings(max_entries=50, pool_size=3))


def test_repeat_hits_and_names_its_entry(cache: ExactCache) -> None:
    entry = cache.put(req("What is a monad?"), "A monoid in the category of endofunctors.", "m")
    got = cache.get(req("What is a monad?"))
    assert got.answer is not None
    assert got.answer.text == "A monoid in the category of endofunctors."
    step = got.trace("exact_cache")
    assert (step.stage, step.decision, step.detail["entry_id"]) == ("exact_cache", "hit", entry)


def test_tenant_never_sees_another_tenants_answer(cache: ExactCache) -> None:
    cache.put(req("What is our refund policy?", tenant="a"), "A's private policy", "m")
    assert cache.get(req("What is our refund policy?", tenant="b")).answer is None
    hit = cache.get(req("What is our refund policy?", tenant="a")).answer
    assert hit is not None and hit.text == "A's private policy"


def test_whitespace_is_normalised_but_content_is_not(cache: ExactCache) -> None:
    cache.put(req("list  files\n in python"), "os.listdir", "m")
    assert cache.get(req("  list files in python ")).hit
    assert not cache.get(req("list files in rust")).hit


@pytest.mark.parametrize(
    "variant",
    [
        req("What is a monad?", system="Answer in French."),
        req("What is a monad?", temperature=0.0, model="smollm2-135m-instruct"),
        CacheRequest(
            tenant="acme",
            model="qwen2.5-coder-0.5b-instruct",
            messages=(ChatMessage(role="user", content="What is a monad?"),),
            params=SamplingParams(temperature=0.0, max_tokens=16),
            now=NOW,
        ),
        CacheRequest(
            tenant="acme",
            model="qwen2.5-coder-0.5b-instruct",
            messages=(ChatMessage(role="user", content="What is a monad?"),),
            tools=[{"type": "function", "function": {"name": "lookup"}}],
            now=NOW,
        ),
    ],
)
def test_anything_that_changes_the_answer_changes_the_key(cache: ExactCache, variant: CacheRequest) -> None:
    cache.put(req("What is a monad?"), "answer", "m")
    assert cache.get(req("What is a monad?")).hit
    assert not cache.get(variant).hit


def test_time_sensitive_requests_only_hit_within_their_bucket(cache: ExactCache) -> None:
    cache.put(req("What is the weather in Paris today?"), "sunny", "m")
    assert cache.get(req("What is the weather in Paris today?", now=NOW + 60)).hit
    assert not cache.get(req("What is the weather in Paris today?", now=NOW + 7200)).hit


def test_expired_entries_miss(tmp_path: Path) -> None:
    with Database(tmp_path / "c.db") as db:
        cache = ExactCache(db, CacheSettings(exact_ttl_s=10))
        cache.put(req("q"), "a", "m")
        assert cache.get(req("q", now=NOW + 5)).hit
        assert not cache.get(req("q", now=NOW + 11)).hit


def test_sampled_requests_fill_a_pool_and_rotate(cache: ExactCache) -> None:
    seen = []
    for i in range(3):
        r = req("Write a haiku about rust", temperature=0.8)
        assert not cache.get(r).hit  # pool not full: generate a fresh one
        cache.put(r, f"haiku {i}", "m")
    for _ in range(6):
        hit = cache.get(req("Write a haiku about rust", temperature=0.8)).answer
        assert hit is not None
        seen.append(hit.text)
    assert all(a != b for a, b in itertools.pairwise(seen))
    assert set(seen) == {"haiku 0", "haiku 1", "haiku 2"}


def test_size_cap_evicts_least_recently_used(cache: ExactCache) -> None:
    for i in range(50):
        cache.put(req(f"question {i}", now=NOW + i), f"answer {i}", "m")
    assert cache.get(req("question 0", now=NOW + 100)).hit  # touch the oldest
    for i in range(50, 60):
        cache.put(req(f"question {i}", now=NOW + 200 + i), f"answer {i}", "m")
    n, size = cache.stats()
    assert n == 50 and size > 0
    assert cache.get(req("question 0", now=NOW + 300)).hit
    assert not cache.get(req("question 1", now=NOW + 300)).hit
    assert cache.get(req("question 59", now=NOW + 300)).hit


def test_store_survives_reopen(tmp_path: Path) -> None:
    with Database(tmp_path / "c.db") as db:
        ExactCache(db).put(req("persist?"), "yes", "m")
    with Database(tmp_path / "c.db") as db:
        assert ExactCache(db).get(req("persist?")).hit
        assert db.integrity_ok()


def ask(cache: ExactCache, r: CacheRequest, upstream: Iterator[str]) -> tuple[str, bool]:
    """What the pipeline does: serve a hit, else take the upstream's answer and store it."""
    got = cache.get(r)
    if got.answer is not None:
        return got.answer.text, True
    text = next(upstream)
    cache.put(r, text, "m")
    return text, False


def test_a_deterministic_model_at_default_temperature_hits_on_the_third_ask(cache: ExactCache) -> None:
    upstream = itertools.repeat("A monad is a monoid in the category of endofunctors.")
    served = [ask(cache, req("What is a monad?", temperature=1.0), upstream) for _ in range(5)]
    assert [hit for _, hit in served] == [False, False, True, True, True]
    assert cache.stats()[0] == 1  # one row: repeats are counted, not stored twice


def test_a_varying_model_fills_the_pool_and_never_repeats_itself(cache: ExactCache) -> None:
    upstream = (f"haiku {i}" for i in itertools.count())
    served = [ask(cache, req("Write a haiku about rust", temperature=1.0), upstream) for _ in range(9)]
    assert [hit for _, hit in served] == [False] * 3 + [True] * 6
    texts = [text for text, _ in served]
    assert len(set(texts[:3])) == 3 and set(texts[3:]) == set(texts[:3])
    assert all(a != b for a, b in itertools.pairwise(texts))


def test_a_repeat_while_filling_serves_the_distinct_answers_in_turn(cache: ExactCache) -> None:
    upstream = iter(["sonnet A", "sonnet B", "sonnet A"])
    served = [ask(cache, req("Write a sonnet", temperature=0.7), upstream) for _ in range(7)]
    assert [hit for _, hit in served] == [False] * 3 + [True] * 4
    hits = [text for text, hit in served if hit]
    assert set(hits) == {"sonnet A", "sonnet B"}
    assert all(a != b for a, b in itertools.pairwise(hits))


def test_a_file_from_before_repeats_were_counted_opens_and_fills(tmp_path: Path) -> None:
    with Database(tmp_path / "old.db") as db:
        old_schema = SCHEMA.replace("    repeats INTEGER NOT NULL DEFAULT 0,\n", "")
        assert "repeats" not in old_schema
        db.conn.executescript(old_schema)
        db.conn.execute(
            "INSERT INTO exact_entries(key, tenant, answer, answer_hash, model, created, expires,"
            " last_used, bytes) VALUES ('k', 't', 'a', 'h', 'm', 0, 1e18, 0, 1)"
        )
    with Database(tmp_path / "old.db") as db:
        cache = ExactCache(db, CacheSettings(pool_size=3))
        upstream = itertools.repeat("same")
        served = [ask(cache, req("q", temperature=1.0), upstream) for _ in range(3)]
        assert [hit for _, hit in served] == [False, False, True]
        assert db.conn.execute("SELECT count(*) FROM exact_entries").fetchone()[0] == 2
