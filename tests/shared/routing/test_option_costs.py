"""Threshold tables that carry each option's calibrated cost, and the edge's cascade judge pricing
every tier of the success head with them (today's defaults where a table has none)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from shared.config import EdgeSettings
from shared.embedding import OnnxEmbedder
from shared.routing.calibration import OperatingPoint, ThresholdTable
from shared.routing.escalation import (
    DEFAULT_FRONTIER,
    DEFAULT_HUB_FINETUNED,
    DEFAULT_HUB_OSS,
    CascadeJudge,
    MeasuredOption,
)
from shared.routing.heads import HEADS_DIR, THRESHOLDS_FILE, ClassifierHeads
from shared.taxonomy import Route

OPTIONS = ("edge", "oss", "finetuned", "frontier")
COSTS = (3e-7, 2e-5, 4e-4, 5e-3)
POINTS = (OperatingPoint(0.9, 0.2, 0.8, 0.002, True), OperatingPoint(0.95, 0.1, 0.84, 0.003, True))


def _table(costs: tuple[float, ...] = COSTS) -> ThresholdTable:
    return ThresholdTable(OPTIONS, "frontier", 0.88, POINTS, option_costs=costs)


def test_option_costs_round_trip_and_old_tables_still_load(tmp_path: Path) -> None:
    table = _table()
    path = tmp_path / "t.json"
    table.save(path)
    body = json.loads(path.read_text())
    assert body["option_costs"] == dict(zip(OPTIONS, COSTS, strict=True))
    assert ThresholdTable.load(path) == table
    assert table.cost_of("finetuned") == 4e-4 and table.cost_of("nope") is None
    del body["option_costs"]
    path.write_text(json.dumps(body))
    old = ThresholdTable.load(path)
    assert old.option_costs == () and old.cost_of("edge") is None
    assert old == replace(table, option_costs=())
    with pytest.raises(ValueError, match="option costs"):
        ThresholdTable(OPTIONS, "frontier", 0.88, POINTS, option_costs=(1.0, 2.0))


@pytest.fixture
def heads_dir(tmp_path: Path) -> Path:
    """The shipped heads, whose success head names all four tiers."""
    d = tmp_path / "routing"
    shutil.copytree(HEADS_DIR, d, ignore=shutil.ignore_patterns("outcomes"))
    assert ClassifierHeads.load(d).success.labels == OPTIONS
    return d


def test_judge_prices_every_tier_at_the_calibrated_costs(heads_dir: Path, models_dir: Path) -> None:
    _table().save(heads_dir / THRESHOLDS_FILE)
    with OnnxEmbedder(models_dir / "minilm-l6-v2-onnx") as emb:
        judge = CascadeJudge.from_settings(EdgeSettings(models_dir=models_dir), emb, heads_dir=heads_dir)
        opts = judge.policy.options
        assert [o.route for o in opts] == [
            Route.EDGE_LOCAL,
            Route.HUB_OSS,
            Route.HUB_FINETUNED,
            Route.FRONTIER,
        ]
        assert all(isinstance(o, MeasuredOption) for o in opts)
        assert [o.estimate(10, 1000) for o in opts] == list(COSTS)  # flat: what lambda was calibrated on
        v = judge.judge("Which planet is largest?\nA. Mars\nB. Jupiter\nC. Venus\nD. Mercury", 0.05)
        assert [c.route for c in v.decision.candidates] == [o.route for o in opts]
        assert [round(c.cost_usd, 12) for c in v.decision.candidates] == list(COSTS)
        assert {"p_edge", "p_hub_oss", "p_hub_finetuned", "p_frontier"} <= set(v.detail)


def test_judge_falls_back_to_default_prices_without_costs(heads_dir: Path, models_dir: Path) -> None:
    # an old table: no costs at all; and one whose edge cost is zero (not a usable price)
    for table in (replace(_table(), option_costs=()), _table((0.0, *COSTS[1:]))):
        table.save(heads_dir / THRESHOLDS_FILE)
        settings = EdgeSettings(models_dir=models_dir)
        judge = CascadeJudge.from_settings(settings, None, heads_dir=heads_dir)
        opts = {o.route: o for o in judge.policy.options}
        assert list(opts) == [Route.EDGE_LOCAL, Route.HUB_OSS, Route.HUB_FINETUNED, Route.FRONTIER]
        assert not isinstance(opts[Route.EDGE_LOCAL], MeasuredOption)
        assert opts[Route.EDGE_LOCAL].cost == settings.local_model.cost
        if not table.option_costs:
            assert opts[Route.HUB_OSS].cost == DEFAULT_HUB_OSS
            assert opts[Route.HUB_FINETUNED].cost == DEFAULT_HUB_FINETUNED
            assert opts[Route.FRONTIER].cost == DEFAULT_FRONTIER
        else:
            assert opts[Route.FRONTIER].estimate(1, 1) == COSTS[3]
