"""The pipeline's cache stage over a real cache file and the real embedding model: a store reuses
the vector its lookup embedded the question into, and a repeat waits for a store still running."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.cache.indexer import Indexer
from edge_agent.cache.service import CacheService
from edge_agent.cache.stage import CacheStage
from edge_agent.request import Answer
from shared.config import CacheSettings
from shared.embedding import Embedder
from shared.taxonomy import Route
from shared.wire import Usage
from tests.edge_agent.cache.asks import answered, ask
from tests.edge_agent.cache.counting import CountingEmbedder


@pytest.fixture()
def counted(embedder: Embedder) -> CountingEmbedder:
    return CountingEmbedder(embedder)


@pytest.fixture()
def stage(tmp_path: Path, counted: CountingEmbedder) -> Iterator[CacheStage]:
    # the shipped point serves identical questions only; this domain is relaxed so a paraphrase hits
    settings = CacheSettings(relaxed_domains={"general": 0.08})
    with CacheService(tmp_path / "cache.db", settings, embedder=counted) as service:
        yield CacheStage(service)


async def test_a_store_embeds_nothing_its_lookup_already_did(
    stage: CacheStage, counted: CountingEmbedder
) -> None:
    asked = ask("How do I reverse a list in Python?")
    looked = await stage.lookup(asked)
    assert looked.hit is None and looked.embedding is not None
    assert counted.texts == ["How do I reverse a list in Python?"]
    await stage.store(asked, answered("Use lst[::-1]."), looked)
    assert len(counted.texts) == 1  # the store reused the lookup's vector
    # the vector it stored is the question's: a paraphrase finds the answer by meaning
    paraphrase = await stage.lookup(ask("how can I reverse a python list"))
    assert paraphrase.hit is not None and paraphrase.hit.route is Route.SEMANTIC_CACHE
    assert paraphrase.hit.text == "Use lst[::-1]."


async def test_without_its_lookup_a_store_embeds_the_question(
    stage: CacheStage, counted: CountingEmbedder
) -> None:
    await stage.store(ask("What is the boiling point of water?"), answered("100 °C at sea level."), None)
    await stage.drain()  # the question is embedded off the request path, on spare CPU
    assert counted.texts == ["What is the boiling point of water?"]


async def test_a_repeat_hits_while_its_semantic_entry_is_still_being_indexed(
    stage: CacheStage, counted: CountingEmbedder
) -> None:
    asked = ask("Which planet is known as the red planet?")
    await stage.store(asked, answered("Mars."), None)
    again = await stage.lookup(ask("Which planet is known as the red planet?", rid="r2"))
    assert again.hit is not None and again.hit.route is Route.EXACT_CACHE and again.hit.text == "Mars."
    await stage.drain()
    assert counted.texts == ["Which planet is known as the red planet?"]
    # once indexed, the same question in another form is served by the semantic stage
    other_form = await stage.lookup(ask("which planet is known as the red planet", rid="r3"))
    assert other_form.hit is not None and other_form.hit.route is Route.SEMANTIC_CACHE


async def test_fallback_answers_are_never_stored(stage: CacheStage) -> None:
    asked = ask("What colour is the sky?")
    fallback = Answer("blue", "stop", Usage(), Route.EDGE_LOCAL, "m", (), fallback=True)
    await stage.store(asked, fallback, await stage.lookup(asked))
    assert (await stage.lookup(asked)).hit is None


async def test_misses_indexed_together_share_one_write(stage: CacheStage, counted: CountingEmbedder) -> None:
    # a long linger, so the four embeddings surely travel as one batch on this loaded host
    stage.service.indexer = Indexer(capacity=16, linger_s=1.0)
    questions = [
        "Which planet is known as the red planet?",
        "What is the tallest mountain on Earth?",
        "Who wrote the novel Moby-Dick?",
        "What is the boiling point of water?",
    ]
    answers = ["Mars.", "Everest.", "Herman Melville.", "100 °C at sea level."]
    await asyncio.gather(
        *(
            stage.store(ask(q, rid=f"r{i}"), answered(a), None)
            for i, (q, a) in enumerate(zip(questions, answers, strict=True))
        )
    )
    assert sorted(counted.texts) == sorted(questions)  # each embedded once, alone
    assert (stage.writes.batches, stage.writes.written) == (1, 4)
    for q, a in zip(questions, answers, strict=True):  # each one's own entry, served by another form
        hit = (await stage.lookup(ask(q.lower().rstrip("?"), rid="again"))).hit
        assert hit is not None and hit.route is Route.SEMANTIC_CACHE and hit.text == a
    stage.service.indexer.close()
