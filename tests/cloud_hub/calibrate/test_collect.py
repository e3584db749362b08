"""Collection against a live deployment: real hub and edge agent processes, the SmolLM2 edge model
live, and the echo backend as the hub's only (OSS) tier, so the run takes seconds, not minutes."""

from __future__ import annotations

import math
from pathlib import Path

import yaml
from rich.console import Console

from cloud_hub.calibrate.collect import collect, pick_items
from cloud_hub.calibrate.plan import deployed_tiers
from cloud_hub.demo.items import load_items
from cloud_hub.demo.traffic import Record
from shared.routing.datasets import load_outcomes, unwrap_recorded
from shared.taxonomy import Tier
from tests.cloud_hub.calibrate.conftest import RB_SOURCES


def test_collect_asks_each_live_tier_and_writes_graded_outcomes(tmp_path: Path, data_dir: Path) -> None:
    hub_yaml = tmp_path / "hub-echo.yaml"
    hub_yaml.write_text(
        yaml.safe_dump(
            {"models": [{"name": "echo-oss", "backend": "echo", "tier": "oss"}], "default_model": "echo-oss"}
        )
    )
    home = tmp_path / "home"
    tiers = deployed_tiers(home, hub_yaml)
    assert [(t.tier, t.model, t.live) for t in tiers] == [
        (Tier.EDGE, "smollm2-135m-instruct", True),
        (Tier.OSS, "echo-oss", True),
    ]
    # multiple-choice sources only: the edge answers in a few tokens
    items, _ = load_items(data_dir, RB_SOURCES[:2])
    picked = pick_items(items, tiers, per_source=2, seed=0)
    assert len(picked) == 4 and all(i.split == "train" for i in picked)
    seen: list[Record] = []
    out = tmp_path / "live.csv"
    answers = collect(
        picked,
        tiers,
        home=home,
        console=Console(quiet=True),
        outcomes=out,
        hub_config=hub_yaml,
        concurrency=2,
        on_record=seen.append,
    )
    assert sorted(r.route for r in seen) == ["edge_local"] * 4 + ["hub_oss"] * 4
    assert all(r.request.item.split == "train" for r in seen)
    table = load_outcomes(out)
    assert table.models == ["smollm2-135m-instruct", "echo-oss"]
    assert [unwrap_recorded(p) for p in table.prompts] == [i.prompt for i in picked]
    for j, model in enumerate(table.models):
        got = answers[model]
        assert all(a is not None for a in got), f"{model} did not answer every item itself"
        for i, a in enumerate(got):
            assert a is not None and a.score in (0.0, 1.0)
            assert table.scores[i, j] == a.score and table.costs[i, j] == a.cost_usd
            assert unwrap_recorded(table.responses[model][i]) == a.text
    edge_costs = [a.cost_usd for a in answers["smollm2-135m-instruct"] if a is not None]
    assert all(c > 0 and math.isfinite(c) for c in edge_costs), "a local answer carries its energy cost"
    # the echo tier repeats the question: its "answer" is the prompt's first words
    echo = answers["echo-oss"]
    assert all(
        a is not None and picked[i].prompt.startswith(a.text.split(" ")[0]) for i, a in enumerate(echo)
    )
