from __future__ import annotations

import numpy as np
import pytest

from edge_agent.cache.verifier import (
    FEATURES,
    Verdict,
    Verifier,
    choose_threshold,
    fit_logistic,
    load_verifier,
    train,
)
from shared.config import CacheSettings


def test_newton_fit_recovers_a_known_separator() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4000, 3))
    true_w = np.array([2.0, -1.0, 0.5])
    y = (rng.random(4000) < 1 / (1 + np.exp(-(x @ true_w - 0.3)))).astype(np.float64)
    w, b = fit_logistic(x, y, l2=1e-3)
    assert np.allclose(w, true_w, atol=0.25) and abs(b + 0.3) < 0.2
    w2, b2 = fit_logistic(x, y, l2=1e-3)
    assert np.array_equal(w, w2) and b == b2  # deterministic


def test_threshold_meets_the_false_rate_on_its_data() -> None:
    rng = np.random.default_rng(1)
    probs = list(rng.random(2000))
    labels = [int(rng.random() < p) for p in probs]
    t = choose_threshold(probs, labels, 0.05)
    kept = [lab for p, lab in zip(probs, labels, strict=True) if p >= t]
    assert len(kept) >= 20 and kept.count(0) / len(kept) <= 0.05


def test_train_save_load_and_refine() -> None:
    rows = []
    paraphrases = [("How do I sort a list in Python?", "how can i sort a python list")] * 40
    strangers = [("How do I sort a list in Python?", "How do I learn Python quickly?")] * 40
    rows += [(0.93, a, b, 1) for a, b in paraphrases] + [(0.86, a, b, 0) for a, b in strangers]
    v = train(rows, min_cosine=0.8, max_false_rate=0.02, meta={"source": "test"})
    assert v.accept(0.93, *paraphrases[0], "general")[0]
    assert not v.accept(0.86, *strangers[0], "general")[0]
    assert not v.accept(0.99, "What is 2+2?", "What is 2+3?", "general")[0]
    again = Verifier.from_json(v.to_json())
    assert again.probability_of([0.9] * len(FEATURES)) == v.probability_of([0.9] * len(FEATURES))
    # an audit of the code domain that found wrong hits just above the default raises only that domain
    t0 = v.threshold("code")
    raised = v.refine("code", [(t0 + 0.001, False), (t0 + 0.002, True), (0.9999, True)], 0.0)
    assert raised > t0 and v.threshold("general") == t0


def test_frontier_reads_best_recall_per_false_hit_rate() -> None:
    from edge_agent.cache.training import frontier, label_noise
    from shared.paraphrase import Pair

    # 40 right hits ranked first, then 10 wrong ones, then 50 right ones; 100 positives in all
    parts = [np.linspace(1.0, 0.9, 40), np.linspace(0.89, 0.8, 10), np.linspace(0.79, 0.1, 50)]
    scores = np.concatenate(parts)
    labels = np.array([1] * 40 + [0] * 10 + [1] * 50, dtype=np.int64)
    got = frontier(scores, labels, 100)
    assert got["0.02"] == 0.4 and got["0.1"] == 0.9  # 10 wrong in 100 served
    assert frontier(np.zeros(100), labels, 100)["0.1"] == 0.0  # scored 0: never served
    noise = label_noise(
        [
            Pair("How do I invest wisely?", "How can I invest wisely?", 0),
            Pair("How do I learn Go?", "How should I learn Go?", 1),
            Pair("What is SMTP?", "What is SNMP?", 0),
        ]
    )
    assert noise["same_content_pairs"] == 2 and noise["labelled_not_duplicate"] == 0.5


def fitted() -> Verifier:
    rows = [(0.93, "How do I sort a list in Python?", "how can i sort a python list", 1)] * 40
    rows += [(0.86, "How do I sort a list in Python?", "How do I learn Python quickly?", 0)] * 40
    return train(rows, min_cosine=0.8, max_false_rate=0.02, meta={})


def test_verdicts_accept_grey_and_reject() -> None:
    v = fitted()
    cached = "How do I sort a list in Python?"
    p = v.probability(0.9, cached, "How should I sort a list in Python?")[0]
    v.default_threshold, v.grey_floor = p + 1e-6, p - 1e-6  # the candidate sits between the two
    grey = v.decide(0.9, cached, "How should I sort a list in Python?", "general")
    assert (grey.verdict, grey.reason, grey.point) == (Verdict.GREY, "grey_zone", "safe")
    assert not grey.accepted
    assert v.accept(0.9, cached, "How should I sort a list in Python?", "general")[2] == "verifier_rejected"
    same = v.decide(0.85, cached, "how do i sort a list in python", "general")
    assert (same.verdict, same.reason, same.probability) == (Verdict.ACCEPT, "identical", 1.0)
    veto = v.decide(0.99, "What is 2+2?", "What is 2+3?", "general")
    assert (veto.verdict, veto.reason) == (Verdict.REJECT, "numbers_differ")
    assert v.decide(0.7, cached, "how can i sort a python list", "general").reason == "below_min_cosine"
    v.grey_floor = p + 1e-7
    assert v.decide(0.9, cached, "How should I sort a list in Python?", "general").verdict is Verdict.REJECT


def test_operating_points_are_named_and_relaxations_come_from_the_fit() -> None:
    v = fitted()
    v.points = {"0.02": 0.9, "0.05": 0.8, "0.1": 0.7}
    v.default_threshold = 0.9
    assert v.point("code") == "safe"
    assert v.relax_domain("code", 0.06) == 0.8  # the largest fitted rate not above the one asked
    assert (v.point("code"), v.threshold("code")) == ("relaxed:code", 0.8)
    v.raise_domain("code", 0.85)  # an audit found wrong hits: it wins, and the trace says so
    assert (v.point("code"), v.threshold("code")) == ("audited:code", 0.85)
    v.raise_threshold(0.95)
    assert (v.point("general"), v.point("code"), v.threshold("code")) == ("strict", "strict", 0.95)
    with pytest.raises(ValueError, match="no operating point"):
        v.relax_domain("chat", 0.01)
    again = Verifier.from_json(v.to_json())
    assert (again.point("code"), again.points, again.grey_floor) == ("strict", v.points, v.grey_floor)


def test_config_relaxes_one_domain_only() -> None:
    shipped = Verifier.load()
    rate = max(float(r) for r in shipped.points)
    v = load_verifier(CacheSettings(relaxed_domains={"chat": rate}))
    assert v.point("chat") == "relaxed:chat" and v.threshold("chat") < v.default_threshold
    assert (v.point("code"), v.threshold("code")) == ("safe", shipped.default_threshold)


def test_shipped_weights_carry_a_safe_point_and_a_grey_zone_below_it() -> None:
    v = Verifier.load()
    assert v.default_point == "safe" and v.meta["safe"]["max_false_rate"] == 0.02
    # the safe point is the 2% one when the training split has it, else identical questions only
    assert v.default_threshold == v.points.get("0.02", 1.0)
    assert 0.0 < v.grey_floor < min(v.points.values()) <= max(v.points.values()) < v.default_threshold
