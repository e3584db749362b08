from __future__ import annotations

from pathlib import Path

from cloud_hub.demo.curve import target_curve
from cloud_hub.demo.items import load_items
from cloud_hub.demo.summary import TierInfo
from cloud_hub.demo.traffic import Record
from cloud_hub.demo.workload import Request
from shared.routing.calibration import ThresholdTable
from shared.routing.embed import load_default_embedder
from shared.routing.heads import HEADS_DIR, THRESHOLDS_FILE, ClassifierHeads
from shared.taxonomy import Tier


def test_curve_spends_more_as_the_target_rises(data_dir: Path, models_dir: Path) -> None:
    items, _ = load_items(data_dir, ["routing/routellm/routellm/evals/gsm8k/gsm8k_responses.csv"])
    items = [i for i in items if i.split == "eval"][:40]
    passes: dict[str, list[Record]] = {"edge": [], "frontier": []}
    for n, it in enumerate(items):
        # outcomes as a run would measure them: the cheap tier right on even items only
        edge = Record(Request(n, it, "acme"), "edge", route="edge_local", cost_usd=1e-6)
        edge.score = float(n % 2 == 0)
        front = Record(Request(n, it, "acme"), "frontier", route="frontier", cost_usd=0.01)
        front.score = it.recorded["gpt-4-1106-preview"]
        passes["edge"].append(edge)
        passes["frontier"].append(front)
    tiers = [TierInfo(Tier.EDGE, "smollm2", "llamacpp"), TierInfo(Tier.FRONTIER, "gpt-4", "replay")]
    curve = target_curve(
        passes,
        tiers,
        ClassifierHeads.load(),
        ThresholdTable.load(HEADS_DIR / THRESHOLDS_FILE),
        load_default_embedder(models_dir),
    )
    assert [c["target"] for c in curve] == sorted(c["target"] for c in curve)
    costs = [c["cost_ratio"] for c in curve]
    assert costs == sorted(costs), "a higher quality target never buys a cheaper mix"
    assert all(0.0 <= c["frontier_share"] <= 1.0 and c["items"] == 40 for c in curve)
    # without a frontier baseline there is nothing to be a ratio of
    assert (
        target_curve(
            {"edge": passes["edge"]},
            tiers[:1],
            ClassifierHeads.load(),
            ThresholdTable.load(HEADS_DIR / THRESHOLDS_FILE),
            load_default_embedder(models_dir),
        )
        == []
    )
