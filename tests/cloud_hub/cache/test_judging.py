"""The hub's judge service on the real pair-head judge and a real global-cache file: approvals become
aliases only their own edge can read, every verdict is remembered, and reviewed verdicts set the
judge's per-domain thresholds through ``cloud-hub cache judge fit``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_hub.cache.judge import ANY_DOMAIN, JudgeItem
from cloud_hub.cache.judge_head import HeadJudge
from cloud_hub.cache.judging import JudgeService, Overloaded, load_thresholds
from cloud_hub.cache.store import GlobalCacheStore
from cloud_hub.cli import main
from shared.cache_judge import JudgeHead
from shared.cache_text import GlobalEntry
from shared.routing.embed import TextEmbedder, load_default_embedder
from shared.wire import CacheJudgeRequest


@pytest.fixture(scope="module")
def embedder(models_dir: Path) -> TextEmbedder:
    return load_default_embedder(models_dir)


@pytest.fixture()
def head(embedder: TextEmbedder) -> HeadJudge:
    return HeadJudge(embedder, JudgeHead.load())  # fresh thresholds for every test


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[GlobalCacheStore]:
    s = GlobalCacheStore(tmp_path / "global_cache.db")
    yield s
    s.close()


def _req(question: str, n: int = 0, tenant: str = "tenant-a") -> CacheJudgeRequest:
    return CacheJudgeRequest(
        judge_id=f"j{n}", tenant=tenant, family="fam", sys_hash="sys", question=question,
        cached_question="How do I reverse a list in Python?", answer="Use lst[::-1].",
    )  # fmt: skip


def _thresholds(path: Path, head: HeadJudge, value: float) -> None:
    path.write_text(json.dumps({head.name: {"general": value}}))


async def test_an_approval_becomes_an_alias_only_its_edge_reads(
    tmp_path: Path, store: GlobalCacheStore, head: HeadJudge
) -> None:
    published: list[GlobalEntry] = []
    thresholds = tmp_path / "judge_thresholds.json"
    _thresholds(thresholds, head, 0.0)  # this domain's reviews trust every verdict
    service = JudgeService(store, [head], publish=published.append, thresholds_file=thresholds)
    verdict = await service.handle(_req("how can I reverse a python list"), "edge-1")
    assert verdict.approved and not verdict.remembered and verdict.judge == head.name
    (entry,) = published
    assert (entry.kind, entry.tenant, entry.question, entry.answer) == (
        "alias", "tenant-a", "how can I reverse a python list", "Use lst[::-1].",
    )  # fmt: skip
    assert store.changes_since(0, edge="edge-1")[0] == [entry]
    assert store.changes_since(0)[0] == [] and store.changes_since(0, edge="edge-2")[0] == []
    # the same pair again is answered from memory: no judge runs, nothing is published twice
    again = await service.handle(_req("How can I reverse a Python list?", 1), "edge-1")
    assert again.approved and again.remembered and service.judged == 1 and len(published) == 1


async def test_a_rejection_is_remembered_and_never_judged_again(
    tmp_path: Path, store: GlobalCacheStore, head: HeadJudge
) -> None:
    published: list[GlobalEntry] = []
    service = JudgeService(store, [head], publish=published.append)  # shipped threshold: 1.0
    first = await service.handle(_req("how can I reverse a python list"), "edge-1")
    assert not first.approved and 0.0 < first.score < 1.0
    second = await service.handle(_req("how can I reverse a python list", 1), "edge-1")
    assert not second.approved and second.remembered and service.judged == 1
    assert published == [] and store.changes_since(0, edge="edge-1")[0] == []
    # another edge asking the same pair is a different pair: its own verdict, its own alias scope
    other = await service.handle(_req("how can I reverse a python list", 2), "edge-2")
    assert not other.remembered and service.judged == 2


async def test_a_full_queue_refuses_instead_of_waiting(store: GlobalCacheStore, head: HeadJudge) -> None:
    service = JudgeService(store, [head], max_pending=1)
    service._pending = 1  # one candidate already waits for the judge
    with pytest.raises(Overloaded):
        await service.handle(_req("how can I reverse a python list"), "edge-1")
    assert service.refused == 1 and service.judged == 0


async def test_reviewed_verdicts_set_the_judges_domain_threshold(
    tmp_path: Path, store: GlobalCacheStore, head: HeadJudge
) -> None:
    home = tmp_path
    service = JudgeService(store, [head], thresholds_file=home / "judge_thresholds.json")
    verdict = await service.handle(_req("how can I reverse a python list"), "edge-1")
    assert not verdict.approved
    sample = home / "sample.jsonl"
    assert main(["cache", "judge", "sample", "--home", str(home), "--out", str(sample)]) == 0
    (row,) = [json.loads(line) for line in sample.read_text().splitlines()]
    assert row["verifier"] == head.name and row["correct"] is None
    # a reviewer finds this verdict and 29 like it correct reuses: the domain may approve them
    reviewed = [{**row, "correct": True, "probability": row["probability"] + i * 1e-4} for i in range(30)]
    sample.write_text("".join(json.dumps(r) + "\n" for r in reviewed))
    assert main(["cache", "judge", "fit", "--home", str(home), "--reviews", str(sample)]) == 0
    fitted = load_thresholds(home / "judge_thresholds.json")[head.name]["general"]
    assert fitted == pytest.approx(row["probability"])
    later = await service.handle(_req("how do you reverse a python list", 3), "edge-1")
    assert head.threshold("general") == fitted  # re-read before that verdict
    assert later.approved == (later.score >= fitted) and service.judged == 2


async def test_reviews_fit_each_domain_apart_and_the_service_applies_each_its_own(
    tmp_path: Path, store: GlobalCacheStore, head: HeadJudge
) -> None:
    service = JudgeService(store, [head], thresholds_file=tmp_path / "judge_thresholds.json")
    code_req = CacheJudgeRequest(
        judge_id="c", tenant="t", family="fam", sys_hash="sys", question="how can I reverse a python list",
        cached_question="How do I reverse a list in Python?", answer="Use lst[::-1].", domain="code",
    )  # fmt: skip
    chat_req = CacheJudgeRequest(
        judge_id="h", tenant="t2", family="fam", sys_hash="sys", question="how can I reverse a python list",
        cached_question="How do I reverse a list in Python?", answer="Use lst[::-1].", domain="chat",
    )  # fmt: skip
    score = head.score([service_item(code_req)])[0]
    # code: reviewers found approvals from just under this score upwards right; chat: wrong up to 0.999
    rows = [
        {
            "domain": "code",
            "verifier": head.name,
            "cached": "a",
            "query": "b",
            "probability": score - 0.01 + i * 1e-3,
            "correct": True,
        }
        for i in range(30)
    ]
    rows += [
        {
            "domain": "chat",
            "verifier": head.name,
            "cached": "a",
            "query": "b",
            "probability": 0.5 + i * 0.0166,
            "correct": False,
        }
        for i in range(30)
    ]
    rows += [{"domain": "rare", "verifier": head.name, "cached": "a", "query": "b",
              "probability": 0.1, "correct": True}] * 5  # fmt: skip
    reviews = tmp_path / "reviews.jsonl"
    reviews.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["cache", "judge", "fit", "--home", str(tmp_path), "--reviews", str(reviews)]) == 0
    fitted = load_thresholds(tmp_path / "judge_thresholds.json")[head.name]
    assert fitted["code"] == pytest.approx(score - 0.01) and fitted["chat"] > 1.0 and "rare" not in fitted
    code = await service.handle(code_req, "edge-1")
    chat = await service.handle(chat_req, "edge-1")
    # the same questions and score (another tenant, so not the remembered verdict): approved where the
    # domain's reviews trust it, refused where they do not
    assert not chat.remembered and code.score == pytest.approx(chat.score)
    assert code.approved and not chat.approved
    assert head.threshold("rare") == head.head.threshold  # too few reviews: the shipped default


def service_item(req: CacheJudgeRequest) -> JudgeItem:
    return JudgeItem(req.cached_question, req.question, req.answer, req.domain)


def test_a_star_entry_sets_every_domain_without_its_own(head: HeadJudge) -> None:
    head.set_thresholds({ANY_DOMAIN: 0.3, "code": 0.9})
    assert (head.threshold("code"), head.threshold("chat")) == (0.9, 0.3)
