"""A cache hit writes nothing on its own: its counts are batched (``edge_agent.cache.hits``)."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

from edge_agent.cache.db import Database
from edge_agent.cache.exact import ExactCache
from edge_agent.cache.hits import HitLog
from edge_agent.cache.keys import CacheRequest
from edge_agent.cache.service import CacheService
from shared.config import CacheSettings
from shared.embedding import Embedder
from shared.wire import ChatMessage, SamplingParams

NOW = 1_800_000_000.0


def req(text: str, *, temperature: float = 0.0, now: float = NOW) -> CacheRequest:
    return CacheRequest(
        tenant="acme",
        model="qwen2.5-coder-0.5b-instruct",
        messages=(ChatMessage(role="user", content=text),),
        params=SamplingParams(temperature=temperature),
        now=now,
    )


def test_an_exact_hit_writes_nothing_until_a_batch_is_due(tmp_path: Path) -> None:
    with Database(tmp_path / "c.db") as db:
        cache = ExactCache(db, CacheSettings())
        entry = cache.put(req("What is a monad?"), "A monoid.", "m")
        cache.hits = HitLog(max_pending=2, max_age_s=3600)
        writes = db.conn.total_changes
        assert cache.get(req("What is a monad?", now=NOW + 5)).hit
        assert db.conn.total_changes == writes  # no write on the hit
        assert cache.get(req("a second entry?")).answer is None
        cache.put(req("a second entry?"), "yes", "m")  # a store writes the pending touch first
        (served, used) = db.conn.execute(
            "SELECT served, last_used FROM exact_entries WHERE id = ?", (entry,)
        ).fetchone()
        assert (served, used) == (2, NOW + 5)
        writes = db.conn.total_changes
        assert cache.get(req("What is a monad?", now=NOW + 6)).hit
        assert cache.get(req("a second entry?", now=NOW + 7)).hit  # two rows pending: due
        assert db.conn.total_changes == writes + 2  # one batch, one row each
        assert not len(cache.hits)


def test_a_pool_rotates_with_its_counts_still_in_memory(tmp_path: Path) -> None:
    with Database(tmp_path / "c.db") as db:
        cache = ExactCache(db, CacheSettings(pool_size=3))
        for i in range(3):
            cache.put(req("Write a haiku", temperature=0.8), f"haiku {i}", "m")
        writes = db.conn.total_changes
        seen = []
        for _ in range(6):
            hit = cache.get(req("Write a haiku", temperature=0.8)).answer
            assert hit is not None
            seen.append(hit.text)
        assert db.conn.total_changes == writes
        assert all(a != b for a, b in itertools.pairwise(seen))
        assert set(seen) == {"haiku 0", "haiku 1", "haiku 2"}


def test_counts_noted_before_close_reach_the_file(tmp_path: Path) -> None:
    with CacheService(tmp_path / "c.db", CacheSettings()) as svc:
        svc.store(req("What is a monad?"), "A monoid.", "m")
        for i in range(3):
            assert svc.lookup(req("What is a monad?", now=NOW + i)).hit
    with Database(tmp_path / "c.db") as db:
        row = db.conn.execute("SELECT served, last_used FROM exact_entries").fetchone()
    assert tuple(row) == (4, NOW + 2)  # served once when stored, then three hits


def test_a_busy_writer_makes_a_due_batch_wait_not_the_hit(tmp_path: Path) -> None:
    with Database(tmp_path / "c.db") as db:
        cache = ExactCache(db, CacheSettings())
        cache.put(req("What is a monad?"), "A monoid.", "m")
        assert cache.get(req("What is a monad?")).hit  # opens this thread's reader, as a first hit does
        cache.hits = HitLog(max_pending=1, max_age_s=3600)
        held, release = threading.Event(), threading.Event()

        def writer() -> None:
            with db.lock:
                held.set()
                release.wait(10)

        thread = threading.Thread(target=writer)
        thread.start()
        held.wait(10)
        try:
            assert cache.get(req("What is a monad?")).hit  # returns although the lock is held
            assert len(cache.hits) == 1
        finally:
            release.set()
            thread.join(10)
        assert cache.get(req("What is a monad?")).hit
        assert not len(cache.hits)


def test_a_semantic_hit_writes_nothing_either(tmp_path: Path, embedder: Embedder) -> None:
    with CacheService(tmp_path / "c.db", CacheSettings(), embedder=embedder) as svc:
        assert svc.semantic is not None
        entry = svc.semantic.put(req("How do I reverse a list in Python?"), "Use lst[::-1].", "m")
        writes = svc.db.conn.total_changes
        found = svc.lookup(req("how do i reverse a list in python", now=NOW + 9)).answer
        assert found is not None and found.text == "Use lst[::-1]."
        assert svc.db.conn.total_changes == writes
        assert svc.semantic.flush_hits() == 1
        used = svc.db.conn.execute("SELECT last_used FROM sem_entries WHERE id = ?", (entry,)).fetchone()
        served = svc.db.conn.execute("SELECT served FROM sem_answers WHERE entry_id = ?", (entry,)).fetchone()
        assert (used[0], served[0]) == (NOW + 9, 2)
