from __future__ import annotations

import math

from cloud_hub.demo.items import Item
from cloud_hub.demo.scoring import Grader, code_under_test, paired_ratio_ci
from cloud_hub.demo.summary import TierInfo, summarise
from cloud_hub.demo.traffic import ROUTED, Pass, Record
from cloud_hub.demo.workload import Request
from shared.taxonomy import Tier

MCQ = Item("mmlu:1", "mmlu", "mcq", "q1", "B", "eval")
MATH = Item("gsm8k:1", "gsm8k", "math", "q2", "18", "eval")
CHAT = Item("qqp:1", "qqp", "chat", "q3", None, "eval")


def _rec(item: Item, pass_name: str, route: str, score: float | None, cost: float, seq: int = 0) -> Record:
    r = Record(Request(seq, item, "acme"), pass_name, route=route, cost_usd=cost)
    r.score = score
    return r


def test_grader_live_answers() -> None:
    g = Grader()
    assert g.grade_text(MCQ, "B") == 1.0
    assert g.grade_text(MCQ, "The answer is C") == 0.0
    assert g.grade_text(MATH, "9 * 2 = 18\n#### 18") == 1.0
    assert g.grade_text(MATH, "no idea") == 0.0
    assert g.grade_text(CHAT, "anything") is None


def test_replayed_answers_keep_their_recorded_score() -> None:
    rec = Record(
        Request(0, MCQ, "acme"), ROUTED, route="frontier", text="C", replayed=True, recorded_score=1.0
    )
    assert Grader().grade(rec) == 1.0  # the recorded grade, not a re-extraction of the text


def test_code_answers_run_against_the_tests_under_the_called_name() -> None:
    tests = "assert add_two(1, 2) == 3\nassert add_two(0, 0) == 0"
    item = Item("mbpp:1", "mbpp", "code", "Write a function that adds two numbers.", tests, "eval")
    good = "```python\ndef plus(a, b):\n    return a + b\n```"
    bad = "```python\ndef plus(a, b):\n    return a - b\n```"
    assert "add_two = plus" in code_under_test(good, tests)
    g = Grader()
    assert g.grade_text(item, good) == 1.0
    assert g.grade_text(item, bad) == 0.0


def test_paired_bootstrap_interval_brackets_the_ratio() -> None:
    router = [1.0, 0.0, 1.0, 1.0] * 25
    base = [1.0, 1.0, 1.0, 0.0] * 25
    ratio, low, high = paired_ratio_ci(router, base, [1.0] * 100)
    assert ratio == 1.0
    assert low < 1.0 < high
    ratio, low, high = paired_ratio_ci([0.0] * 10, [1.0] * 10, [1.0] * 10)
    assert ratio == 0.0 and low == high == 0.0
    assert math.isnan(paired_ratio_ci([], [], [])[0])


def test_summary_pairs_items_and_never_counts_a_cache_hit_as_a_baseline() -> None:
    routed = [
        _rec(MCQ, ROUTED, "edge_local", 1.0, 0.0001, 0),
        _rec(MATH, ROUTED, "frontier", 1.0, 0.01, 1),
        _rec(MCQ, ROUTED, "exact_cache", 1.0, 0.0, 2),
        _rec(CHAT, ROUTED, "edge_local", None, 0.0001, 3),
    ]
    frontier = [
        _rec(MCQ, "frontier", "frontier", 1.0, 0.02),
        _rec(MATH, "frontier", "frontier", 1.0, 0.01),
        _rec(CHAT, "frontier", "hub_oss", None, 0.0001),  # fell through: not an always-frontier answer
    ]
    oss = [_rec(MCQ, "oss", "exact_cache", 1.0, 0.0), _rec(MATH, "oss", "hub_oss", 0.0, 0.001)]
    s = summarise(
        {ROUTED: routed, "frontier": frontier, "oss": oss}, [TierInfo(Tier.FRONTIER, "gpt-4", "replay")]
    )
    assert s["requests"] == 4
    assert s["served_without_frontier"] == 0.75
    assert s["baseline_cache_hits"] == 1  # and the report fails the run on it
    cost = s["cost"]["vs_frontier"]  # type: ignore[index]
    # paired: the chat request has no always-frontier answer, so it is left out on both sides
    assert cost["requests"] == 3
    assert math.isclose(cost["router_usd"], 0.0101)
    assert math.isclose(cost["baseline_usd"], 0.05)
    assert s["quality_ratio_vs_frontier"] == 1.0
    assert s["baseline_uncovered"] == {"frontier": 1, "oss": 1}
    tiers = s["tiers"]
    assert tiers[0]["replayed"] is True and tiers[0]["accuracy"] == 1.0  # type: ignore[index]


def test_baseline_passes_bypass_every_cache() -> None:
    assert Pass("edge", Tier.EDGE).overrides() == {"route": "edge_local", "cache": "bypass"}
    assert Pass("oss", Tier.OSS).overrides() == {"route": "hub", "hub_model": "tier:oss", "cache": "bypass"}
    assert Pass(ROUTED).overrides() is None
