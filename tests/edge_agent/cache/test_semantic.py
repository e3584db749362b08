from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.cache.keys import CacheRequest
from edge_agent.cache.service import CacheService
from shared.config import CacheSettings
from shared.embedding import Embedder
from shared.wire import ChatMessage, SamplingParams

NOW = 1_800_000_000.0
# the shipped point serves identical questions only on QQP's evidence; these tests are about what
# happens to paraphrases once served, so the general domain is relaxed to its fitted 8% point
RELAXED = CacheSettings(relaxed_domains={"general": 0.08})


def req(text: str, tenant: str = "a", temperature: float = 0.0) -> CacheRequest:
    return CacheRequest(
        tenant=tenant,
        model="qwen2.5-coder-0.5b-instruct",
        messages=(ChatMessage(role="user", content=text),),
        params=SamplingParams(temperature=temperature),
        now=NOW,
    )


@pytest.fixture()
def service(tmp_path: Path, embedder: Embedder) -> Iterator[CacheService]:
    with CacheService(tmp_path / "cache.db", RELAXED, embedder=embedder) as svc:
        yield svc


def test_paraphrase_hits_semantically_with_trace(service: CacheService) -> None:
    service.store(req("How do I reverse a list in Python?"), "Use lst[::-1] or lst.reverse().", "m")
    res = service.lookup(req("how can I reverse a python list"))
    assert res.answer is not None and res.answer.text == "Use lst[::-1] or lst.reverse()."
    exact, semantic = res.trace
    assert (exact.stage, exact.decision) == ("exact_cache", "miss")
    assert (semantic.stage, semantic.decision) == ("semantic_cache", "hit")
    assert semantic.detail["entry_id"] == res.answer.entry_id
    assert 0.8 <= float(semantic.detail["similarity"]) <= 1.0  # type: ignore[arg-type]
    assert "verifier" in semantic.detail
    assert semantic.detail["operating_point"] == "relaxed:general"


def test_the_safe_default_leaves_a_paraphrase_in_the_grey_zone(tmp_path: Path, embedder: Embedder) -> None:
    with CacheService(tmp_path / "safe.db", CacheSettings(), embedder=embedder) as svc:
        assert svc.semantic is not None
        entry = svc.semantic.put(req("How do I reverse a list in Python?"), "Use lst[::-1].", "m")
        asked = req("how can I reverse a python list")
        res = svc.lookup(asked)
        # the safe point can serve no paraphrase, so the request path does not even embed it
        assert res.answer is None and res.embedding is None and res.trace[-1].reason == "identical_only"
        # off the request path, the same question finds its grey-zone candidate for the hub's judge
        step = svc.semantic.get(asked, serve=False).trace("semantic_cache")
        assert (step.reason, step.detail["best_reason"], step.detail["grey_entry"]) == (
            "no_verified_match", "grey_zone", entry,
        )  # fmt: skip
        assert 0.0 < float(step.detail["grey_probability"]) < 1.0  # type: ignore[arg-type]
        assert entry is not None
        assert svc.semantic.judge_material(entry, asked.now) == (
            "How do I reverse a list in Python?", "Use lst[::-1].", "general",
        )  # fmt: skip
        same = svc.lookup(req("how do i reverse a list in python"))  # identical forms are always served
        assert same.answer is not None and same.trace[-1].detail["operating_point"] == "safe"


def test_tenant_b_never_gets_tenant_a_semantic_answer(service: CacheService) -> None:
    service.store(req("How do I reverse a list in Python?", tenant="a"), "A's answer", "m")
    assert service.lookup(req("How do I reverse a list in Python?", tenant="b")).answer is None
    assert service.lookup(req("how can I reverse a python list", tenant="b")).answer is None
    own = service.lookup(req("how can I reverse a python list", tenant="a")).answer
    assert own is not None and own.text == "A's answer"


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("How do I enable 2FA on my GitHub account?", "How do I disable 2FA on my GitHub account?"),
        ("How do I enable 2FA on GitHub?", "How do I disable 2FA on GitHub?"),
        ("What is 2+2?", "What is 2+3?"),
        ("Is Python a compiled language?", "Is Python not a compiled language?"),
        ("What is the capital of France?", "What is the capital of Germany?"),
        ("Convert 100 USD to EUR", "Convert 150 USD to EUR"),
    ],
)
def test_near_misses_never_hit(service: CacheService, stored: str, asked: str) -> None:
    service.store(req(stored), "stored answer", "m")
    res = service.lookup(req(asked))
    assert res.answer is None
    assert res.trace[-1].decision in ("miss", "skip")


def test_personal_questions_stay_out_of_the_semantic_cache(service: CacheService) -> None:
    service.store(req("What is my favourite colour?"), "blue", "m")
    res = service.lookup(req("What's my favorite color?"))
    assert res.answer is None and res.trace[-1].reason == "ineligible:personal"
    assert service.semantic is not None and service.semantic.count() == (0, 0)


def test_sampled_requests_rotate_a_pool(service: CacheService) -> None:
    for i in range(3):
        r = req("Tell me a fun fact about octopuses", temperature=0.9)
        assert service.lookup(r).answer is None
        service.store(r, f"fact {i}", "m")
    texts = []
    for _ in range(3):
        hit = service.lookup(req("tell me a fun fact about octopuses!", temperature=0.9)).answer
        assert hit is not None and hit.stage == "semantic_cache"
        texts.append(hit.text)
    assert sorted(texts) == ["fact 0", "fact 1", "fact 2"]


def test_a_stricter_operating_point_turns_a_borderline_paraphrase_away(
    tmp_path: Path, embedder: Embedder
) -> None:
    strict = RELAXED.model_copy(update={"min_verifier_probability": 0.95})
    with CacheService(tmp_path / "strict.db", strict, embedder=embedder) as svc:
        svc.store(req("How do I reverse a list in Python?"), "Use lst[::-1].", "m")
        res = svc.lookup(req("how can I reverse a python list"))
        assert res.answer is None and res.trace[-1].reason == "no_verified_match"
        assert res.trace[-1].detail["best_reason"] == "grey_zone"
        # the same wording still hits: identical question forms skip the verifier
        same = svc.lookup(req("how do i reverse a list in python"))
        assert same.answer is not None and same.answer.text == "Use lst[::-1]."


def test_a_deterministic_model_fills_the_semantic_pool_with_one_repeat(service: CacheService) -> None:
    r = req("Tell me a fun fact about octopuses", temperature=1.0)
    for _ in range(2):  # the model gives the same text twice; the exact pool is then ready too
        assert service.lookup(r).answer is None
        service.store(r, "Octopuses have three hearts.", "m")
    hit = service.lookup(req("tell me a fun fact about octopuses!", temperature=1.0)).answer
    assert hit is not None and hit.stage == "semantic_cache"
    assert hit.text == "Octopuses have three hearts."
