"""The main job end to end on a small deployment: the real CLIs, hub and agent processes, CURVE link,
SmolLM2 on the edge, an echo model as the hub's open tier (so no vLLM start) and the real replayed
Mixtral and GPT-4 tiers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from cloud_hub.demo import main as demo
from shared.config import HubSettings

pytestmark = pytest.mark.slow


def test_demo_writes_an_honest_report(tmp_path: Path) -> None:
    defaults = [
        m.model_dump(mode="json", exclude_none=True, exclude={"api_key"}) for m in HubSettings().models
    ]
    models = [m for m in defaults if m["backend"] == "replay"]
    models.insert(
        0, {"name": "echo-oss", "backend": "echo", "tier": "oss", "cost": {"usd_per_1k_completion": 1e-5}}
    )
    hub_yaml = tmp_path / "hub.yaml"
    hub_yaml.write_text(yaml.safe_dump({"models": models, "default_model": "echo-oss"}), encoding="utf-8")
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    out = tmp_path / "report"
    args = parser.parse_args(
        [
            "--requests",
            "24",
            "--concurrency",
            "1",  # one request at a time, so a repeat never races its original
            "--home",
            str(tmp_path / "home"),
            "--out",
            str(out),
            "--hub-config",
            str(hub_yaml),
        ]
    )
    assert demo.run(args) == 0
    s = json.loads((out / "northstar.json").read_text(encoding="utf-8"))
    for key in ("requests", "served_without_frontier", "cost_ratio_vs_frontier", "quality_ratio_vs_frontier"):
        assert key in s
    assert s["requests"] == 24
    assert s["baseline_cache_hits"] == 0
    low, high = s["quality_ratio_ci95"]
    assert low <= s["quality_ratio_vs_frontier"] <= high
    tiers = {t["name"]: t for t in s["tiers"]}
    assert tiers["frontier"]["replayed"] and tiers["finetuned"]["replayed"]
    assert not tiers["edge"]["replayed"] and tiers["edge"]["model"] == "smollm2-135m-instruct"
    assert tiers["frontier"]["covered_items"] > 0
    rows = [json.loads(line) for line in Path(s["records_file"]).read_text(encoding="utf-8").splitlines()]
    baseline = [r for r in rows if r["pass"] != "routed"]
    assert baseline and not [r for r in baseline if r["route"] in ("exact_cache", "semantic_cache")]
    # the control: the routed pass, which does use the caches, serves its exact repeats from them
    routed = [r for r in rows if r["pass"] == "routed"]
    assert any(r["route"] == "exact_cache" for r in routed if r["repeat"] == "exact")
    assert (out / "northstar.md").read_text(encoding="utf-8").startswith("# North-star report")
    assert (out / "northstar.png").stat().st_size > 10_000
