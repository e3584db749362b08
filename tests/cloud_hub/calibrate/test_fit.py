"""Fitting on real recorded outcomes: four tier heads, honest AUCs, a four-option threshold table
with its costs, and never an eval item (the stand-in live columns are explained in conftest)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from cloud_hub.calibrate.fit import FitResult, auc, fit, write
from cloud_hub.calibrate.outcomes import JoinedTable, RecordedCosts, join
from shared.embedding import OnnxEmbedder
from shared.routing.calibration import DEFAULT_TARGETS, ThresholdTable
from shared.routing.datasets import load_outcomes
from shared.routing.embed import embedder_id, routing_view
from shared.routing.heads import MANIFEST_FILE, SUCCESS_FILE, THRESHOLDS_FILE, ClassifierHeads
from shared.routing.linear import LinearHead
from shared.taxonomy import Tier
from tests.cloud_hub.calibrate.conftest import RB_SOURCES, Fixture


class SeenEmbedder:
    """The real embedder, remembering every text it was asked to embed."""

    def __init__(self, inner: OnnxEmbedder) -> None:
        self.inner = inner
        self.seen: list[str] = []

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.seen += list(texts)
        return self.inner.embed(texts)


@pytest.fixture(scope="module")
def joined(recorded: Fixture, data_dir: Path) -> JoinedTable:
    costs = RecordedCosts.load(data_dir, RB_SOURCES)
    # the eval items go in as extra rows too: the join must refuse them there as well
    extra = [*recorded.extra, *recorded.eval_items]
    return join(load_outcomes(recorded.csv), recorded.items, recorded.tiers, costs, extra)


@pytest.fixture(scope="module")
def fitted(joined: JoinedTable, embedder: OnnxEmbedder) -> tuple[FitResult, SeenEmbedder]:
    seen = SeenEmbedder(embedder)
    return fit(joined, seen), seen


def test_the_default_deployment_has_four_tiers(recorded: Fixture) -> None:
    got = [(t.tier, t.model, t.live) for t in recorded.tiers]
    assert got == [
        (Tier.EDGE, "smollm2-135m-instruct", True),
        (Tier.OSS, "qwen2.5-coder-0.5b-instruct", True),
        (Tier.FINETUNED, "mixtral-8x7b-instruct", False),
        (Tier.FRONTIER, "gpt-4-1106-preview", False),
    ]


def test_join_keeps_train_items_only_with_every_tier(recorded: Fixture, joined: JoinedTable) -> None:
    split = {i.item_id: i.split for i in recorded.items}
    picked = [i.item_id for i in recorded.picked]
    assert joined.item_ids == picked + [i.item_id for i in recorded.extra]
    assert all(split[i] == "train" for i in joined.item_ids)
    # once from the outcomes file, once from the extra rows
    assert joined.dropped["eval split (never used for calibration)"] == 2 * len(recorded.eval_items) > 0
    complete = joined.complete()
    assert complete[: len(picked)].all(), "picked items have every tier's outcome and cost"
    assert not complete[len(picked) :].any()
    live = [joined.column(Tier.EDGE), joined.column(Tier.OSS)]
    assert (
        np.isnan(joined.scores[len(picked) :, live]).all()
        and np.isnan(joined.costs[len(picked) :, live]).all()
    )
    # replayed columns are the items' recorded outcomes, not the stand-ins
    by_id = {i.item_id: i for i in recorded.items}
    ft, fr = joined.column(Tier.FINETUNED), joined.column(Tier.FRONTIER)
    for row, iid in enumerate(joined.item_ids):
        assert joined.scores[row, fr] == by_id[iid].recorded["gpt-4-1106-preview"]
        assert joined.scores[row, ft] == by_id[iid].recorded["mistralai/mixtral-8x7b-chat"]
    assert (joined.costs[~np.isnan(joined.costs)] > 0).all()
    assert not np.isnan(joined.costs[:, [ft, fr]]).any()


def test_fit_never_embeds_an_eval_item(recorded: Fixture, fitted: tuple[FitResult, SeenEmbedder]) -> None:
    _, seen = fitted
    # the heads read each prompt's routing view (the end of a long few-shot prompt)
    train = {routing_view(i.prompt) for i in recorded.items if i.split == "train"}
    assert seen.seen and set(seen.seen) <= train
    assert not set(seen.seen) & {routing_view(i.prompt) for i in recorded.eval_items}


def test_heads_are_the_four_tiers_with_aucs_in_range(
    recorded: Fixture, fitted: tuple[FitResult, SeenEmbedder]
) -> None:
    result, _ = fitted
    assert result.head.labels == ("edge", "oss", "finetuned", "frontier")
    n_live, n_all = len(recorded.picked), len(recorded.picked) + len(recorded.extra)
    assert (result.rows, result.calibration_rows) == (n_all, n_live)
    assert [f.rows for f in result.tiers] == [n_live, n_live, n_all, n_all]
    assert result.head.kind == "sigmoid" and result.head.dim == 384
    for f in result.tiers:
        assert 0.0 <= f.auc <= 1.0, f
        assert 0.0 <= f.success_rate <= 1.0 and 0.5 <= f.majority <= 1.0
        assert 0.0 <= f.head_accuracy <= 1.0
    # GPT-4 answers these far more often right than Mistral-7B does
    rate = {f.tier: f.success_rate for f in result.tiers}
    assert rate["frontier"] > rate["edge"]


def test_threshold_table_has_four_options_and_their_costs(
    joined: JoinedTable, fitted: tuple[FitResult, SeenEmbedder]
) -> None:
    table = fitted[0].table
    assert table.options == ("edge", "oss", "finetuned", "frontier") and table.reference == "frontier"
    complete = joined.complete()
    assert table.option_costs == pytest.approx(tuple(joined.costs[complete].mean(axis=0)))
    assert table.cost_of("frontier") == max(table.option_costs)
    frontier = joined.scores[complete, joined.column(Tier.FRONTIER)]
    assert table.reference_quality == pytest.approx(frontier.mean())
    assert [p.target for p in table.points] == list(DEFAULT_TARGETS)


def test_written_artifacts_load_and_keep_the_task_and_domain_heads(
    fitted: tuple[FitResult, SeenEmbedder], tmp_path: Path
) -> None:
    result, _ = fitted
    manifest = write(result, tmp_path, embedder_id(), {"command": "test"})
    heads = ClassifierHeads.load(tmp_path)
    assert heads.success.labels == result.head.labels
    assert np.array_equal(LinearHead.load(tmp_path / SUCCESS_FILE).weights, result.head.weights)
    assert ThresholdTable.load(tmp_path / THRESHOLDS_FILE) == result.table
    on_disk = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert on_disk == manifest and on_disk["command"] == "test"
    assert set(on_disk["success_auc"]) == {"edge", "oss", "finetuned", "frontier"}
    assert on_disk["task_labels"] == list(heads.task.labels)
    with pytest.raises(ValueError, match="trained on"):
        write(result, tmp_path, "another-embedder:1", {})


def test_auc_by_rank_sum() -> None:
    y = np.array([True, False, True, False])
    assert auc(y, np.array([0.9, 0.1, 0.8, 0.3])) == 1.0
    assert auc(y, np.array([0.1, 0.9, 0.2, 0.8])) == 0.0
    assert auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert auc(y, np.array([0.9, 0.8, 0.4, 0.1])) == 0.75
    assert np.isnan(auc(np.array([True, True]), np.array([0.1, 0.2])))
