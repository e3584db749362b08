"""Thresholds fitted for the hub's judges on labelled pairs, and the score file another bench reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloud_hub.bench.judge_fit import MIN_APPROVED, alone_point, fit_both, score_file
from cloud_hub.cache.judge import JudgeItem
from cloud_hub.cache.judge_head import HeadJudge
from cloud_hub.cache.judge_prompts import PROMPTS


def test_both_needs_the_two_scores_where_either_alone_lets_wrong_pairs_through() -> None:
    # 40 reusable pairs both judges like; 10 wrong ones the head likes and 10 the LLM likes
    head = [0.9] * 40 + [0.95] * 10 + [0.1] * 10
    llm = [0.8] * 40 + [0.1] * 10 + [0.99] * 10
    labels = [1] * 40 + [0] * 20
    got = fit_both(head, llm, labels, 0.02)
    assert (got.head, got.llm, got.approved, got.false_rate, got.recall) == (0.9, 0.8, 40, 0.0, 1.0)
    # alone, each ranks its own wrong pairs first: nothing is clean enough to approve
    assert alone_point(head, labels, 0.02)["approved"] == 0
    assert alone_point(llm, labels, 0.02)["threshold"] == 1.0


def test_too_few_clean_approvals_approve_nothing() -> None:
    n = MIN_APPROVED - 1
    got = fit_both([0.9] * n, [0.9] * n, [1] * n, 0.02)
    assert got.approved == 0 and got.head > 1.0 and got.llm > 1.0


def test_score_file_writes_one_row_per_pair_under_the_judge_name(tmp_path: Path, models_dir: Path) -> None:
    src = tmp_path / "pairs.jsonl"
    pairs = [("How do I reverse a list in Python?", "how can I reverse a python list"),
             ("How do I reverse a list in Python?", "How do I bake sourdough bread?")]  # fmt: skip
    src.write_text("".join(json.dumps({"text_a": a, "text_b": b, "label": 1}) + "\n" for a, b in pairs))
    head = HeadJudge.load(models_dir=models_dir)
    summary = score_file([head], src, tmp_path / "out.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert summary["pairs"] == 2 and set(summary["judges"]) == {head.name}
    assert [set(r) for r in rows] == [{head.name}] * 2
    assert rows[0][head.name] > rows[1][head.name]
    assert rows[0][head.name] == pytest.approx(head.score([JudgeItem(*pairs[0])])[0])


def test_prompts_are_named_by_their_text_and_show_the_answer_when_known() -> None:
    assert len({p.digest for p in PROMPTS.values()}) == len(PROMPTS)
    item = JudgeItem(
        "How do I reset my password?", "How do I reset my colleague's password?", "Click Forgot."
    )
    for prompt in PROMPTS.values():
        text = prompt.user(item)
        assert item.cached in text and item.query in text and "Stored answer: Click Forgot." in text
        assert "Stored answer" not in prompt.user(JudgeItem(item.cached, item.query))
