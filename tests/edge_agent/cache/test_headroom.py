"""The loop's lag decides whether an answered miss is indexed: a loop that work waits for sheds
the indexing (the exact entry is still stored), a free one indexes again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.cache.headroom import LoopLag
from edge_agent.cache.service import CacheService
from edge_agent.cache.stage import CacheStage
from shared.config import CacheSettings
from shared.embedding import Embedder
from shared.taxonomy import Route
from tests.edge_agent.cache.asks import answered, ask
from tests.edge_agent.cache.counting import CountingEmbedder


def _block(seconds: float) -> None:
    """Hold the loop, as a burst of requests would."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


async def _blocked_beats(load: LoopLag, beats: int, block_s: float) -> None:
    for _ in range(beats):
        _block(block_s)
        await asyncio.sleep(0)  # the late heartbeat runs


async def test_a_held_loop_reads_busy_and_a_free_one_does_not() -> None:
    load = LoopLag(limit_ms=5.0, interval_s=0.01)
    assert not load.busy()  # starts the heartbeat; nothing measured yet
    await _blocked_beats(load, 8, 0.03)
    assert load.busy() and load.lag_ms > 5.0
    await asyncio.sleep(0.3)  # heartbeats on time
    assert not load.busy() and load.lag_ms < 5.0
    load.close()
    load.close()  # idempotent


async def test_no_limit_never_sheds() -> None:
    load = LoopLag(limit_ms=None, interval_s=0.01)
    assert not load.busy()
    await _blocked_beats(load, 4, 0.03)
    assert not load.busy()
    load.close()


@pytest.fixture()
def stage(tmp_path: Path, embedder: Embedder) -> Iterator[CacheStage]:
    with CacheService(tmp_path / "cache.db", CacheSettings(), embedder=CountingEmbedder(embedder)) as svc:
        yield CacheStage(svc)


async def test_a_busy_loop_stores_the_exact_entry_and_sheds_the_indexing(stage: CacheStage) -> None:
    stage.load = LoopLag(limit_ms=5.0, interval_s=0.01)
    sem = stage.service.semantic
    assert sem is not None and isinstance(sem.embedder, CountingEmbedder)
    stage.load.busy()
    await _blocked_beats(stage.load, 8, 0.03)
    asked = ask("Which planet is known as the red planet?")
    await stage.store(asked, answered("Mars."), await stage.lookup(asked))
    assert stage.shed == 1 and sem.embedder.texts == [] and sem.count()[0] == 0
    hit = await stage.lookup(ask("Which planet is known as the red planet?"))
    assert hit.hit is not None and hit.hit.route is Route.EXACT_CACHE
    await asyncio.sleep(0.3)  # room again: the next miss is indexed
    other = ask("What is the tallest mountain on Earth?")
    await stage.store(other, answered("Everest."), await stage.lookup(other))
    await stage.drain()
    assert stage.shed == 1 and sem.embedder.texts == ["What is the tallest mountain on Earth?"]
    assert sem.count()[0] == 1
