from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.routing.calibration import ThresholdTable, calibrate, choose, realised

COST = np.array([1.0, 10.0, 100.0])  # edge, oss, frontier


def _world(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Known success probabilities per tier (monotone in tier) and outcomes drawn from them."""
    rng = np.random.default_rng(seed)
    difficulty = rng.random(n)
    edge = np.clip(1.0 - 1.6 * difficulty, 0.02, 0.98)
    oss = np.clip(1.2 - difficulty, 0.05, 0.98)
    p = np.stack([edge, oss, np.full(n, 0.9)], 1)
    outcomes = (rng.random(p.shape) < p).astype(np.float64)
    return p, outcomes, np.broadcast_to(COST, p.shape).copy()


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95])
def test_calibrated_lambda_hits_target_on_fresh_data(target: float) -> None:
    p, y, c = _world(20000, seed=1)
    table = calibrate(p, COST, y, c, ["edge", "oss", "frontier"], "frontier", targets=[target])
    assert table.points[0].reached
    p2, y2, c2 = _world(20000, seed=2)
    q, cost = realised(choose(p2, COST, table.lam_for(target)), y2, c2)
    strong_q = y2[:, 2].mean()
    assert q >= (target - 0.01) * strong_q  # within sampling noise of the requested quality
    assert cost < COST[2]  # and cheaper than always-frontier


def test_n_tier_rule_beats_best_two_tier_threshold() -> None:
    """The Lagrangian rule over three tiers is at least as cheap as any single threshold between two."""
    p, y, c = _world(20000, seed=3)
    target = 0.95 * y[:, 2].mean()
    table = calibrate(p, COST, y, c, ["edge", "oss", "frontier"], "frontier", targets=[0.95])
    ours = table.points[0].cost
    best_two_tier = np.inf
    for lo in (0, 1):  # RouteLLM style: one threshold on the cheap model's success, then frontier
        for thr in np.linspace(0, 1, 201):
            pick = np.where(p[:, lo] >= thr, lo, 2)
            q, cost = realised(pick, y, c)
            if q >= target:
                best_two_tier = min(best_two_tier, cost)
    assert ours <= best_two_tier * 1.001


def test_known_two_tier_answer_matches_gain_sort() -> None:
    """With true probabilities, the cheapest way to a target sends the largest gains up first."""
    p, _, c = _world(5000, seed=4)
    p2 = p[:, [0, 2]]
    y2, c2 = p2.copy(), c[:, [0, 2]]  # expected outcomes: no sampling noise
    table = calibrate(p2, COST[[0, 2]], y2, c2, ["edge", "frontier"], "frontier", targets=[0.9])
    gain = p2[:, 1] - p2[:, 0]
    need = 0.9 * y2[:, 1].mean()
    order = np.argsort(-gain)
    q = y2[:, 0].mean() + np.cumsum(gain[order]) / len(gain)
    k = int(np.argmax(q >= need)) + 1
    optimal_cost = (k * COST[2] + (len(gain) - k) * COST[0]) / len(gain)
    assert table.points[0].cost == pytest.approx(optimal_cost, rel=0.01)


def test_unreachable_target_is_flagged() -> None:
    p, y, c = _world(2000, seed=5)
    y[:, 2] = 1.0
    y[:, :2] = 0.0
    table = calibrate(p, COST, y, c, ["edge", "oss", "frontier"], "frontier", targets=[1.0])
    assert table.points[0].reached == (table.points[0].quality >= 1.0)


def test_table_roundtrip_and_conservative_lookup(tmp_path: Path) -> None:
    p, y, c = _world(4000, seed=6)
    table = calibrate(p, COST, y, c, ["edge", "oss", "frontier"], "frontier", targets=[0.8, 0.9, 0.95])
    path = tmp_path / "t.json"
    table.save(path)
    back = ThresholdTable.load(path)
    assert back == table
    # a target between two calibrated ones uses the stricter one's (smaller or equal) lambda
    assert back.lam_for(0.85) == back.lam_for(0.9)
    assert back.lam_for(0.8) >= back.lam_for(0.95)
    assert back.lam_for(0.999) == 0.0
    path.write_text(path.read_text().replace('"version": 1', '"version": 99'))
    with pytest.raises(ValueError, match="version"):
        ThresholdTable.load(path)


def test_ties_go_to_the_cheaper_option() -> None:
    pred = np.array([[0.7, 0.7]])
    assert choose(pred, np.array([1.0, 5.0]), 0.0).tolist() == [0]


def test_a_lower_bound_holds_on_fresh_rows_where_the_measured_quality_does_not() -> None:
    """On 75 rows the cheapest setting that reaches a target is the luckiest one; the bootstrap
    lower bound buys a safer setting, which keeps the target on rows it never saw."""
    options, target = ["edge", "oss", "frontier"], 0.95
    fresh_p, fresh_y, fresh_c = _world(50000, seed=99)
    strong = fresh_y[:, 2].mean()
    short_measured = short_bounded = 0
    for seed in range(20):
        p, y, c = _world(75, seed=100 + seed)
        plain = calibrate(p, COST, y, c, options, "frontier", targets=[target])
        bounded = calibrate(p, COST, y, c, options, "frontier", targets=[target], confidence=0.95)
        (pt,) = bounded.points
        assert bounded.confidence == 0.95 and pt.lower is not None and plain.points[0].lower is None
        assert not pt.reached or pt.lower >= target
        assert pt.lam <= plain.points[0].lam  # never a cheaper setting than the measured one
        for table, short in ((plain, "measured"), (bounded, "bounded")):
            q, _ = realised(choose(fresh_p, COST, table.lam_for(target)), fresh_y, fresh_c)
            if q < (target - 0.01) * strong:
                short_measured += short == "measured"
                short_bounded += short == "bounded"
    assert short_bounded < short_measured  # the control: the measured choice misses often
    assert short_bounded <= 2


def test_a_bounded_table_round_trips_and_an_old_one_reads_as_measured(tmp_path: Path) -> None:
    p, y, c = _world(300, seed=5)
    table = calibrate(p, COST, y, c, ["edge", "oss", "frontier"], "frontier", confidence=0.9)
    table.save(tmp_path / "t.json")
    assert ThresholdTable.load(tmp_path / "t.json") == table
    plain = calibrate(p, COST, y, c, ["edge", "oss", "frontier"], "frontier")
    assert '"lower"' not in plain.to_json() and '"confidence"' not in plain.to_json()
    assert ThresholdTable.from_json(plain.to_json()).confidence == 0.0
    with pytest.raises(ValueError, match="confidence"):
        calibrate(p, COST, y, c, ["edge", "oss", "frontier"], "frontier", confidence=1.0)
