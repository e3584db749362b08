from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cloud_hub.bench import agreement as B
from cloud_hub.bench import routing
from cloud_hub.bench.routing_eval import Plan
from cloud_hub.bench.routing_report import agreement_summary, goal_met, pool_agreement
from shared.routing.agreement import encode, normalise, replay
from shared.routing.datasets import GPT4, OutcomeTable, load_outcomes
from shared.routing.estimators import hash_unit


@pytest.fixture(scope="module")
def arc(data_dir: Path) -> OutcomeTable:
    table = load_outcomes(data_dir / "routing/routerbench/arc_challenge_train.csv").complete()
    order = np.argsort([hash_unit(p, "test-slice") for p in table.prompts])[:320]
    return table.subset(np.sort(order))


def _x(n: int) -> np.ndarray[tuple[int, int], np.dtype[np.float32]]:
    # the split is what these tests are about; the prompt features only have to be fixed
    x = np.random.default_rng(0).normal(size=(n, 24)).astype(np.float32)
    out: np.ndarray[tuple[int, int], np.dtype[np.float32]] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def _plan(table: OutcomeTable) -> Plan:
    calib = np.array([hash_unit(p) < 0.5 for p in table.prompts])
    return Plan(np.flatnonzero(calib), np.flatnonzero(~calib))


def _scramble(table: OutcomeTable, rows: np.ndarray[tuple[int], np.dtype[np.intp]]) -> OutcomeTable:
    """Held-back rows with flipped scores, tripled costs and rotated answers: nothing like the real ones."""
    scores, costs = table.scores.copy(), table.costs.copy()
    scores[rows] = 1.0 - scores[rows]
    costs[rows] *= 3.0
    rot = np.roll(rows, 7)
    responses = {m: list(r) for m, r in table.responses.items()}
    for m, r in responses.items():
        for i, j in zip(rows, rot, strict=True):
            r[i] = table.responses[m][j]
    return replace(table, scores=scores, costs=costs, responses=responses)


def test_configuration_never_reads_held_back_rows(arc: OutcomeTable) -> None:
    plan, x = _plan(arc), _x(len(arc))
    real = B.evaluate_agreement(arc, x, plan, GPT4)
    fake = B.evaluate_agreement(_scramble(arc, plan.test), x, plan, GPT4)
    assert real.rows_calibration + real.rows_held_back == len(arc)
    for name in ("agreement", "agreement_head"):
        for t in B.AGREEMENT_TARGETS:
            assert real.rules[name][t] == fake.rules[name][t], (name, t)
            assert real.signals[name][t].calib_cost_ratio == fake.signals[name][t].calib_cost_ratio
    # the held-back figures do come from the held-back rows
    assert real.signals["agreement"][0.95].cost_ratio != fake.signals["agreement"][0.95].cost_ratio


def test_reported_figures_are_the_chosen_rule_on_held_back_rows(arc: OutcomeTable) -> None:
    plan = _plan(arc)
    report = B.evaluate_agreement(arc, _x(len(arc)), plan, GPT4)
    assert report.task == "mcq" and GPT4 not in report.cheap_models
    assert set(report.signals) == {"prompt_only", "agreement", "agreement_head", "oracle"}
    held = arc.subset(plan.test)
    codes = encode(
        [[normalise(r, p) for r, p in zip(held.responses[m], held.prompts, strict=True)] for m in held.models]
    )
    g = held.models.index(GPT4)
    for t, rule in report.rules["agreement"].items():
        rep = replay(rule, held.models, codes, held.scores, held.costs)
        p = report.signals["agreement"][t]
        assert p.cost_ratio == pytest.approx(rep.cost.sum() / held.costs[:, g].sum())
        assert p.quality_ratio == pytest.approx(rep.score.mean() / held.scores[:, g].mean())
        assert rep.cost.sum() <= len(held) * held.costs.max()  # sanity: sums of recorded costs
    for name in ("agreement", "agreement_head"):
        for t, p in report.signals[name].items():
            # chosen with a margin on calibration rows, so they reached the target there
            assert p.calib_quality_ratio is not None and p.calib_quality_ratio >= t
    orc = report.signals["oracle"][0.99]
    assert orc.quality_ratio >= 0.99 and orc.cost_ratio < report.signals["agreement"][0.99].cost_ratio
    summary = agreement_summary(report)
    json.dumps(summary)  # plain JSON
    assert set(summary["goal"]["met"]) == {"prompt_only", "agreement", "agreement_head"}


def test_pooling_sums_costs_and_scores_before_dividing() -> None:
    def part(cost: float, strong_cost: float, score: float) -> dict[str, object]:
        p = {"cost": cost, "strong_cost": strong_cost, "score": score, "strong_score": 10.0}
        return {"dataset": "d", "rows_held_back": 10, "signals": {"agreement": {"0.99": p}}}

    pooled = pool_agreement([part(1.0, 10.0, 10.0), part(9.0, 90.0, 9.8)])
    point = pooled["signals"]["agreement"]["0.99"]
    assert point["cost_ratio"] == pytest.approx(10.0 / 100.0)
    assert point["quality_ratio"] == pytest.approx(19.8 / 20.0)
    assert pooled["goal"]["met"] == {"agreement": True}
    assert goal_met({"agreement": {"0.99": {"cost_ratio": 0.21, "quality_ratio": 1.0}}}) == {
        "agreement": False
    }


@pytest.mark.slow
def test_bench_prints_and_writes_cascade_signals(
    data_dir: Path, models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rb = data_dir / "routing/routerbench"
    args = ["--dataset", str(rb / "winograde_train.csv"), "--dataset", str(rb / "arc_challenge_train.csv")]
    args += [
        "--limit",
        "160",
        "--out",
        str(tmp_path),
        "--no-plots",
        "--embedding-cache",
        str(tmp_path / "e.npz"),
    ]
    assert routing.main(args) == 0
    captured = capsys.readouterr()
    final = json.loads(captured.out.strip().splitlines()[-1])
    assert final["agreement"]["agreement"]["0.99"]["cost_ratio"] > 0
    assert "cascade signals" in captured.err
    body = json.loads((tmp_path / "routing-agreement.json").read_text())
    assert body["pooled"]["rows_held_back"] == sum(d["rows_held_back"] for d in body["datasets"])
    per = json.loads((tmp_path / "routing-arc_challenge_train.json").read_text())["agreement"]
    assert per["rows_calibration"] + per["rows_held_back"] == 160
