"""Exact entries linger to share a commit, yet a repeat of a lingering one still finds it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.cache.service import CacheService
from edge_agent.cache.stage import CacheStage
from edge_agent.cache.writes import ExactWrites
from shared.config import CacheSettings
from shared.taxonomy import Route
from tests.edge_agent.cache.asks import answered, ask, key

LONG = 30.0  # a linger no test waits out: what is stored before it ends was stored on purpose


@pytest.fixture()
def service(tmp_path: Path) -> Iterator[CacheService]:
    with CacheService(tmp_path / "cache.db", CacheSettings(semantic=False)) as svc:
        yield svc


def _stored(service: CacheService) -> int:
    return service.exact.stats()[0]


async def test_entries_stored_within_one_linger_share_one_commit(service: CacheService) -> None:
    writes = ExactWrites(service, linger_s=0.05)
    questions = [f"What is fact number {i} about tides?" for i in range(5)]
    stored = await asyncio.gather(*(writes.put(key(q), f"answer {i}", "m") for i, q in enumerate(questions)))
    assert stored == [True] * 5
    assert (writes.batches, writes.written) == (1, 5)
    assert _stored(service) == 5


async def test_a_full_batch_goes_out_without_waiting_for_the_linger(service: CacheService) -> None:
    writes = ExactWrites(service, linger_s=LONG, max_batch=3)
    puts = [asyncio.ensure_future(writes.put(key(f"question {i}?"), "a", "m")) for i in range(3)]
    done, _ = await asyncio.wait(puts, timeout=5.0)
    assert len(done) == 3 and _stored(service) == 3


async def test_a_repeat_finds_an_entry_still_lingering(service: CacheService) -> None:
    stage = CacheStage(service)
    stage.exact_writes.linger_s = LONG
    store = asyncio.ensure_future(stage.store(ask("Which planet is red?"), answered("Mars."), None))
    await asyncio.sleep(0)  # the store has queued its entry, which waits for the linger
    assert _stored(service) == 0 and not store.done()
    again = await stage.lookup(ask("Which planet is red?"))
    assert again.hit is not None and again.hit.route is Route.EXACT_CACHE and again.hit.text == "Mars."
    await asyncio.wait_for(store, 5.0)  # the lookup wrote the batch: the store is done too


async def test_a_lookup_of_another_question_leaves_the_batch_lingering(service: CacheService) -> None:
    stage = CacheStage(service)
    stage.exact_writes.linger_s = LONG
    store = asyncio.ensure_future(stage.store(ask("Which planet is red?"), answered("Mars."), None))
    await asyncio.sleep(0)
    assert (await stage.lookup(ask("Which planet is blue?"))).hit is None
    assert _stored(service) == 0 and not store.done()
    await stage.close()
    await asyncio.wait_for(store, 5.0)
    assert _stored(service) == 1


async def test_after_close_each_store_goes_out_at_once(service: CacheService) -> None:
    writes = ExactWrites(service, linger_s=LONG)
    writes.close()
    writes.close()  # idempotent
    assert await asyncio.wait_for(writes.put(key("What is the tallest mountain?"), "Everest.", "m"), 5.0)
    assert _stored(service) == 1
