"""The hub's trap guard: the traps the edge's guards let into the grey zone, and rewording it lets by."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_hub.cache.judge import JudgeItem
from cloud_hub.cache.judge_guards import TrapGuard, trap
from cloud_hub.cache.judge_head import HeadJudge
from cloud_hub.cache.judging import JudgeService
from cloud_hub.cache.store import GlobalCacheStore
from shared.wire import CacheJudgeRequest

# each of these reached the edge's grey zone: its guards and verifier neither vetoed nor served it
TRAPS = [
    ("Is it safe to run every day?", "Is it unsafe to run every day?", "prefix_negation"),
    ("Why do some people like rain?", "Why do some people dislike rain?", "prefix_negation"),
    ("How can I fall asleep faster?", "How can I avoid falling asleep?", "negation_differs"),
    ("How do I delete my account?", "How do I delete all accounts?", "owner_differs"),
    ("Where can I find my tax return?", "Where can I find my company's tax return?", "owner_differs"),
    ("How do I reset my password?", "How do I reset my colleague's password?", "owner_differs"),
]
REWORDED = [
    ("How can I overcome the habit of procrastination?", "How should I avoid procrastination?"),
    ("What is the best way to promote your business online?", "How can I promote my business online?"),
    ("Why doesn't anyone answer my questions?", "Why does no one answer my questions?"),
    ("What's your favorite place in the world?", "What is your favorite place in the world?"),
    ("What is your all time favorite TV series?", "What is your favorite TV show?"),
    ("How do I improve my English?", "How can I improve English?"),
]


@pytest.mark.parametrize(("cached", "query", "why"), TRAPS)
def test_traps_are_refused(cached: str, query: str, why: str) -> None:
    assert trap(cached, query) == why
    assert trap(query, cached) == why  # whichever side was cached


@pytest.mark.parametrize(("cached", "query"), REWORDED)
def test_rewording_passes(cached: str, query: str) -> None:
    assert trap(cached, query) is None


async def test_a_trap_never_reaches_the_costlier_judge(tmp_path: Path, models_dir: Path) -> None:
    head = HeadJudge.load(models_dir=models_dir)
    head.set_thresholds({"general": 0.0})  # the head alone would approve anything
    store = GlobalCacheStore(tmp_path / "global_cache.db")
    try:
        service = JudgeService(store, [TrapGuard(), head])
        verdict = await service.handle(_req("j", "How do I reset my colleague's password?"), "edge-1")
        assert not verdict.approved and verdict.score == 0.0
        (row,) = store.judged(10)
        assert set(row.scores) == {"trap-guard:1"}  # the head never ran
        ok = await service.handle(_req("k", "how can I reset my password"), "edge-1")
        assert ok.approved and set(store.judged(10)[0].scores) == {"trap-guard:1", head.name}
    finally:
        store.close()


def _req(judge_id: str, question: str) -> CacheJudgeRequest:
    return CacheJudgeRequest(
        judge_id=judge_id, tenant="t", family="f", sys_hash="s", question=question,
        cached_question="How do I reset my password?", answer="Click 'Forgot password'.",
    )  # fmt: skip


def test_reviews_can_turn_the_guard_off_for_a_domain() -> None:
    g = TrapGuard()
    item = JudgeItem("Is it safe to run every day?", "Is it unsafe to run every day?", domain="legal")
    assert g.score([item]) == [0.0] and g.threshold("legal") == 0.5
    g.set_thresholds({"legal": 0.0})
    assert g.threshold("legal") == 0.0 and g.threshold("general") == 0.5
