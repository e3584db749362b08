"""Edge + the hub's LLM judge from a sample of the grey zone: the weighting and the fitted approvals."""

from __future__ import annotations

import numpy as np

from edge_agent.bench.cache_hub_judge import GreySample, approvals, grey_sample, sampled_figures
from edge_agent.cache.verifier import Verifier
from shared.paraphrase import Pair


def _sample() -> GreySample:
    # 10 pairs: 0 accepted by the edge (right), 1-8 grey, 9 rejected; the judge saw grey 1-4
    labels = np.array([1, 1, 1, 0, 1, 1, 1, 0, 1, 1], dtype=np.int64)
    accepted = np.zeros(10, dtype=bool)
    accepted[0] = True
    grey = np.zeros(10, dtype=bool)
    grey[1:9] = True
    return GreySample(labels, accepted, grey, np.array([1, 2, 3, 4], dtype=np.int64))


def test_sampled_approvals_stand_for_the_whole_grey_zone() -> None:
    s = _sample()
    # approves picks 1, 2 (reusable) and 3 (not): each stands for two grey pairs (8 grey, 4 seen)
    got = sampled_figures(s, np.array([True, True, True, False]))
    assert got["judge_calls"] == 4 and got["grey"] == 8
    assert got["hits"] == 1 + 2 * 3
    assert got["false_hit_rate"] == round(2 / 7, 4)
    assert got["recall"] == round((1 + 2 * 2) / 8, 4)
    assert got["judge_on_sample"] == {"approved": 3, "precision": round(2 / 3, 4), "recall": round(2 / 3, 4)}
    nothing = sampled_figures(s, np.zeros(4, dtype=bool), np.array([0.9, 0.8, 0.7, 0.6]))
    assert nothing["hits"] == 1 and nothing["false_hit_rate"] == 0.0
    assert nothing["best_at_2pct"]["hits"] == 0  # too few served pairs to read a rate off


def test_both_approves_only_where_each_judge_clears_its_fitted_threshold() -> None:
    fitted = {
        "names": {"head": "pair-head:x", "llm": "llm:y", "guard": "g"},
        "head": {"threshold": 0.5}, "llm": {"threshold": 0.7}, "both": {"head": 0.4, "llm": 0.6},
    }  # fmt: skip
    rows = [
        {"pair-head:x": 0.9, "llm:y": 0.65, "g": 1.0},
        {"pair-head:x": 0.45, "llm:y": 0.95, "g": 1.0},
        {"pair-head:x": 0.3, "llm:y": 0.99, "g": 1.0},
        {"pair-head:x": 0.99, "llm:y": 0.99, "g": 0.0},  # a trap: no judge's score lets it through
    ]
    assert approvals(rows, fitted, "head").tolist() == [True, False, False, False]
    assert approvals(rows, fitted, "llm").tolist() == [False, True, True, False]
    assert approvals(rows, fitted, "both").tolist() == [True, True, False, False]


def test_the_grey_sample_holds_only_grey_candidates_and_is_bounded() -> None:
    v = Verifier.load()
    pairs = [
        Pair("How do I boil an egg?", "how do i boil an egg", 1),  # identical: accepted
        Pair("What is 2+2?", "What is 2+3?", 0),  # a guard vetoes it
        Pair("How do I learn Python quickly?", "What is the fastest way to learn Python?", 1),
        Pair("How can I learn Python quickly?", "How do I learn Python fast?", 1),
    ]
    cos = np.array([0.99, 0.97, 0.9, 0.93])
    s = grey_sample(v, pairs, cos, 1, seed=0)
    assert s.accepted.tolist() == [True, False, False, False]
    assert s.grey.tolist() == [False, False, True, True]
    assert len(s.picks) == 1 and int(s.picks[0]) in (2, 3)  # bounded by n, drawn from the grey zone
    assert grey_sample(v, pairs, cos, 5, seed=0).picks.tolist() == [2, 3]
