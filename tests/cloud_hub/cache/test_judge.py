from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloud_hub.cache.judge import (
    JudgeItem,
    Reviewed,
    ReviewError,
    fit_domain_thresholds,
    judge,
    read_reviewed,
)
from cloud_hub.cache.judge_head import HeadJudge

ITEMS = [
    JudgeItem("How do I reverse a list in Python?", "how can I reverse a python list", domain="code"),
    JudgeItem("How do I reverse a list in Python?", "How do I reverse a string in Python?", domain="code"),
    JudgeItem("What is the capital of France?", "How do I bake sourdough bread?"),
]


def rows(domain: str, scored: list[tuple[float, bool]], judge_name: str = "j") -> list[Reviewed]:
    return [Reviewed(domain, judge_name, "a", "b", p, ok) for p, ok in scored]


def test_domain_thresholds_follow_reviewed_verdicts_both_ways() -> None:
    # code: clean above 0.6; chat: wrong approvals up to 0.95; rare: too few verdicts to move
    code = rows(
        "code", [(0.6 + i / 100, True) for i in range(35)] + [(0.3 + i / 100, False) for i in range(20)]
    )
    chat = rows(
        "chat", [(0.9 + i / 1000, False) for i in range(10)] + [(0.96 + i / 1000, True) for i in range(30)]
    )
    rare = rows("rare", [(0.99, False)] * 5)
    got = fit_domain_thresholds(code + chat + rare, "j", 0.02)
    assert got["code"] == pytest.approx(0.6)
    assert got["chat"] == pytest.approx(0.96)
    assert "rare" not in got
    hopeless = rows("legal", [(0.99, False)] * 40)
    assert fit_domain_thresholds(hopeless, "j", 0.02)["legal"] > 1.0


def test_verdicts_from_another_judge_are_refused() -> None:
    with pytest.raises(ReviewError, match="other"):
        fit_domain_thresholds(rows("code", [(0.9, True)] * 40, "other"), "j", 0.02)


def test_reviewed_file_uses_the_audit_format(tmp_path: Path) -> None:
    path = tmp_path / "reviewed.jsonl"
    base = {"id": 1, "domain": "code", "verifier": "j", "cached": "a", "query": "b", "probability": 0.7}
    path.write_text(
        "\n".join(json.dumps(base | {"correct": c}) for c in (True, None, False)) + "\n", encoding="utf-8"
    )
    got = read_reviewed(path)
    assert [r.correct for r in got] == [True, False]
    path.write_text(json.dumps(base | {"correct": "yes"}) + "\n", encoding="utf-8")
    with pytest.raises(ReviewError, match=":1:"):
        read_reviewed(path)


def test_head_judge_approves_the_paraphrase_not_the_changed_object(models_dir: Path) -> None:
    j = HeadJudge.load(models_dir=models_dir)
    probs = j.score(ITEMS)
    assert probs[0] > probs[1] and probs[0] > probs[2]
    j.set_thresholds({"code": probs[0] - 1e-6})
    verdicts = judge(j, ITEMS)
    assert verdicts[0].approved and not verdicts[1].approved
    assert verdicts[0].judge == j.name and j.name.startswith("pair-head:")
    assert j.score([]) == []


@pytest.mark.slow
def test_llm_judge_scores_from_yes_no_logits(models_dir: Path) -> None:
    from cloud_hub.cache.judge_llm import LlmJudge
    from cloud_hub.cache.judge_prompts import DEFAULT_PROMPT, PROMPTS

    j = LlmJudge(models_dir / "qwen2.5-coder-0.5b-instruct")
    try:
        same = JudgeItem("What is the capital of France?", "what's the capital of france", "Paris.")
        other = JudgeItem("What is the capital of France?", "How do I bake sourdough bread?", "Paris.")
        first = j.score([same, other])
        assert all(0.0 < p < 1.0 for p in first)
        assert first[0] > first[1]
        assert j.score([same]) == pytest.approx(first[:1], abs=1e-4)  # the reused KV prefix changes nothing
        assert j.name == f"llm:qwen2.5-coder-0.5b-instruct-q4_k_m:{PROMPTS[DEFAULT_PROMPT].digest}"
    finally:
        j.close()
