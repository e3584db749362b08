"""The loop's CPU share decides whether an answered miss is indexed: a busy loop sheds the
indexing (the exact entry is still stored), an idle one indexes again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.cache.headroom import LoopLoad
from edge_agent.cache.service import CacheService
from edge_agent.cache.stage import CacheStage
from edge_agent.request import Answer, InferenceRequest
from edge_agent.tenancy import RequestContext
from shared.config import CacheSettings
from shared.embedding import Embedder
from shared.taxonomy import Route
from shared.wire import ChatMessage, SamplingParams, Usage
from tests.edge_agent.cache.counting import CountingEmbedder


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_a_spinning_thread_reads_busy_and_an_idle_one_does_not() -> None:
    load = LoopLoad(limit=0.2, window_s=0.05)
    assert not load.busy()  # no full window yet
    _spin(0.1)
    assert load.busy() and load.share > 0.2
    time.sleep(0.15)
    assert not load.busy() and load.share < 0.2


def test_limit_one_never_sheds() -> None:
    load = LoopLoad(limit=1.0, window_s=0.01)
    _spin(0.05)
    assert not load.busy()


@pytest.fixture()
def stage(tmp_path: Path, embedder: Embedder) -> Iterator[CacheStage]:
    with CacheService(tmp_path / "cache.db", CacheSettings(), embedder=CountingEmbedder(embedder)) as svc:
        yield CacheStage(svc)


def _req(text: str) -> InferenceRequest:
    return InferenceRequest(
        ctx=RequestContext(request_id="r", tenant="acme"),
        model="qwen2.5-coder-0.5b-instruct",
        messages=(ChatMessage("user", text),),
        params=SamplingParams(max_tokens=64, temperature=0.0),
    )


def _answer(text: str) -> Answer:
    return Answer(text, "stop", Usage(3, 5), Route.EDGE_LOCAL, "m", ())


async def test_a_busy_loop_stores_the_exact_entry_and_sheds_the_indexing(stage: CacheStage) -> None:
    stage.load = LoopLoad(limit=0.2, window_s=0.05)
    sem = stage.service.semantic
    assert sem is not None and isinstance(sem.embedder, CountingEmbedder)
    _spin(0.1)  # this test's thread is the loop's
    asked = _req("Which planet is known as the red planet?")
    await stage.store(asked, _answer("Mars."), await stage.lookup(asked))
    assert stage.shed == 1 and sem.embedder.texts == [] and sem.count()[0] == 0
    hit = await stage.lookup(_req("Which planet is known as the red planet?"))
    assert hit.hit is not None and hit.hit.route is Route.EXACT_CACHE
    await asyncio.sleep(0.15)  # room again: the next miss is indexed
    other = _req("What is the tallest mountain on Earth?")
    await stage.store(other, _answer("Everest."), await stage.lookup(other))
    await stage.drain()
    assert stage.shed == 1 and sem.embedder.texts == ["What is the tallest mountain on Earth?"]
    assert sem.count()[0] == 1
