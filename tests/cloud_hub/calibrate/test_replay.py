"""A fitted table replayed on a finished demo run's records: the demo's own curve, from the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloud_hub.calibrate.replay import load_passes, replay_curve
from cloud_hub.demo.curve import target_curve
from cloud_hub.demo.items import load_items
from cloud_hub.demo.summary import TierInfo
from cloud_hub.demo.traffic import Record
from cloud_hub.demo.workload import Request
from shared.routing.calibration import ThresholdTable
from shared.routing.embed import load_default_embedder
from shared.routing.heads import HEADS_DIR, THRESHOLDS_FILE, ClassifierHeads
from shared.taxonomy import Tier

ROUTES = {Tier.EDGE: 1e-6, Tier.OSS: 4e-5, Tier.FINETUNED: 2e-4, Tier.FRONTIER: 7e-3}


def test_the_replayed_curve_is_the_demos_curve_of_the_same_records(
    tmp_path: Path, data_dir: Path, models_dir: Path
) -> None:
    items, _ = load_items(data_dir, ["routing/routellm/routellm/evals/gsm8k/gsm8k_responses.csv"])
    items = [i for i in items if i.split == "eval"][:30]
    passes: dict[str, list[Record]] = {}
    for n, it in enumerate(items):
        for k, (tier, cost) in enumerate(ROUTES.items()):
            rec = Record(Request(n, it, "acme"), tier.value, route=tier.route.value, cost_usd=cost)
            rec.score = float((n + k) % 3 != 0) if tier is not Tier.FRONTIER else 1.0
            passes.setdefault(tier.value, []).append(rec)
    records = tmp_path / "records.jsonl"
    rows = [json.dumps(r.row()) for recs in passes.values() for r in recs]
    stranger = {**json.loads(rows[0]), "item_id": "qqp:not-loaded"}  # a Quora question: never graded
    records.write_text("\n".join([*rows, json.dumps(stranger)]) + "\n", encoding="utf-8")

    loaded = load_passes(records, items)
    assert {k: len(v) for k, v in loaded.items()} == {t.value: 30 for t in ROUTES}
    embedder = load_default_embedder(models_dir)
    tiers = [TierInfo(t, "", "") for t in ROUTES]
    table = ThresholdTable.load(HEADS_DIR / THRESHOLDS_FILE)
    direct = target_curve(passes, tiers, ClassifierHeads.load(), table, embedder)
    assert direct and replay_curve(records, items, HEADS_DIR, embedder) == direct

    records.write_text(rows[0] + "\n" + '{"pass": "edge"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"records\.jsonl:2: not a demo record"):
        load_passes(records, items)
