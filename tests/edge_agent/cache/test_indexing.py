"""Indexing on spare CPU with the real embedding model: one embedding per question whoever asks
for it, a child process at the lowest priority giving the agent's own rows, and a bounded queue
that drops rather than waits."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from edge_agent.cache.embedding import ARTIFACT, MemoEmbedder
from edge_agent.cache.indexer import Indexer
from edge_agent.cache.spare import SpareEmbedder
from shared.embedding import Embedder, EmbedderClosed
from tests.edge_agent.cache.counting import CountingEmbedder

QUESTIONS = ["How do I reverse a list in Python?", "What is the capital of France?", "hi"]


@pytest.fixture(scope="module")
def spare(models_dir: Path) -> Iterator[SpareEmbedder]:
    s = SpareEmbedder(models_dir / ARTIFACT)
    yield s
    s.close()


def test_a_question_is_embedded_once_for_every_part_that_reads_it(embedder: Embedder) -> None:
    counted = CountingEmbedder(embedder)
    memo = MemoEmbedder(counted, size=2)
    first = memo.embed([QUESTIONS[0]])  # the routing heads before the draft
    again = memo.embed([QUESTIONS[0]])  # ... after it
    stored = memo.embed_spare([QUESTIONS[0]])  # the semantic store
    assert counted.texts == [QUESTIONS[0]] and memo.reused == 2
    assert np.array_equal(first, again) and np.array_equal(first, stored)
    memo.embed([QUESTIONS[1]])
    memo.embed([QUESTIONS[2]])  # the memo holds two: the first question is gone
    memo.embed([QUESTIONS[0]])
    assert counted.texts.count(QUESTIONS[0]) == 2


def test_the_spare_process_gives_the_agents_rows_at_the_lowest_priority(
    spare: SpareEmbedder, embedder: Embedder
) -> None:
    rows = spare.embed(QUESTIONS)
    alone = np.stack([embedder.embed([q])[0] for q in QUESTIONS])
    assert rows.shape == (3, embedder.dim) and np.array_equal(rows, alone)
    assert spare.pid is not None and os.getpriority(os.PRIO_PROCESS, spare.pid) == 19
    if hasattr(os, "SCHED_IDLE"):
        assert os.sched_getscheduler(spare.pid) == os.SCHED_IDLE


def test_a_closed_spare_process_refuses_work(models_dir: Path) -> None:
    s = SpareEmbedder(models_dir / ARTIFACT)
    s.close()
    s.close()  # idempotent
    with pytest.raises(EmbedderClosed):
        s.embed(["anything"])


async def test_a_full_queue_drops_and_a_closed_indexer_answers_none() -> None:
    indexer = Indexer(capacity=1)
    gate = threading.Event()
    running = asyncio.ensure_future(indexer.run(lambda: gate.wait(10)))  # occupies the thread
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(indexer.run(lambda: "queued"))
    await asyncio.sleep(0.05)
    assert await indexer.run(lambda: "third") is None and indexer.dropped == 1  # the queue is full
    gate.set()
    assert await running is True and await queued == "queued"
    assert await indexer.run(lambda: 1 / 0) is None and indexer.failed == 1  # logged, never raised
    indexer.close()
    assert await indexer.run(lambda: "late") is None and indexer.dropped == 2


async def test_a_paced_indexer_takes_at_most_its_rate_and_queues_the_rest() -> None:
    indexer = Indexer(capacity=16, batch=4, linger_s=0.0, max_per_s=20.0)
    done_at: list[float] = []

    def stamp(items: list[int]) -> list[int | None]:
        done_at.extend(time.monotonic() for _ in items)
        return list(items)

    start = time.monotonic()
    got = await asyncio.gather(*(indexer.run_batched(stamp, i) for i in range(8)))
    assert got == list(range(8)) and indexer.dropped == 0  # the burst waited, none was dropped
    # eight jobs at 20 a second: the last batch cannot start before the first ones' 0.2 s or so
    assert done_at[-1] - start >= 0.15
    closing = time.monotonic()
    indexer.close()  # a pause in progress does not hold the close up
    assert time.monotonic() - closing < 1.0


async def test_queued_items_go_to_one_batch_call_and_each_gets_its_own_result() -> None:
    indexer = Indexer(capacity=16, batch=8, linger_s=0.2)
    calls: list[list[str]] = []

    def upper(items: list[str]) -> list[str | None]:
        calls.append(items)
        return [None if i == "bad" else i.upper() for i in items]

    got = await asyncio.gather(*(indexer.run_batched(upper, t) for t in ["a", "bad", "c"]))
    assert got == ["A", None, "C"] and calls == [["a", "bad", "c"]]  # one call, one failed item
    assert indexer.done == 2 and indexer.failed == 1
    indexer.close()


async def test_a_batch_is_capped_and_never_mixes_callables_or_plain_jobs() -> None:
    indexer = Indexer(capacity=16, batch=2, linger_s=0.2)
    calls: list[tuple[str, list[int]]] = []

    def tagged(tag: str) -> Callable[[list[int]], list[int | None]]:
        def run(items: list[int]) -> list[int | None]:
            calls.append((tag, items))
            return [i * 10 for i in items]

        return run

    double, other = tagged("double"), tagged("other")
    got = await asyncio.gather(
        indexer.run_batched(double, 1),
        indexer.run_batched(double, 2),
        indexer.run_batched(double, 3),  # over the cap: the next batch
        indexer.run(lambda: "plain"),
        indexer.run_batched(other, 4),
    )
    assert list(got) == [10, 20, 30, "plain", 40]
    assert calls == [("double", [1, 2]), ("double", [3]), ("other", [4])]
    indexer.close()


async def test_a_batch_that_raises_fails_each_of_its_items() -> None:
    indexer = Indexer(capacity=4, batch=4, linger_s=0.05)

    def broken(items: list[int]) -> list[int | None]:
        raise RuntimeError("the model went away")

    got = await asyncio.gather(*(indexer.run_batched(broken, i) for i in range(3)))
    assert got == [None, None, None] and indexer.failed == 3
    indexer.close()
    assert await indexer.run_batched(broken, 9) is None and indexer.dropped == 1


def test_a_spare_batch_gives_each_question_its_row_alone(spare: SpareEmbedder, embedder: Embedder) -> None:
    rows = spare.embed_each(QUESTIONS)
    assert len(rows) == 3
    for question, row in zip(QUESTIONS, rows, strict=True):
        assert row is not None and np.array_equal(row, embedder.embed([question])[0])
    assert spare.embed_each([]) == []


def test_the_memo_asks_its_spare_process_only_for_what_it_lacks(
    spare: SpareEmbedder, embedder: Embedder
) -> None:
    counted = CountingEmbedder(embedder)
    memo = MemoEmbedder(counted, background=spare)
    first = memo.embed([QUESTIONS[0]])[0]  # the request path's own session
    rows = memo.embed_spare_each(QUESTIONS)
    assert counted.texts == [QUESTIONS[0]] and memo.embedded == 3 and memo.reused == 1
    assert rows[0] is not None and np.array_equal(rows[0], first)
    assert all(
        r is not None and np.array_equal(r, embedder.embed([q])[0])
        for q, r in zip(QUESTIONS, rows, strict=True)
    )
