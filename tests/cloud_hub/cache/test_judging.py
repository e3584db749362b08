"""The hub's judge service on the real pair-head judge and a real global-cache file: approvals become
aliases only their own edge can read, every verdict is remembered, and reviewed verdicts set the
judge's per-domain thresholds through ``cloud-hub cache judge fit``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

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
