"""Shared fixtures: the real items, the default deployment's tiers, and a live-outcomes CSV built from
real recorded rows.

The live tiers (edge, oss) cannot be asked inside a unit test, so their columns here are real
recorded outcomes of *other* models standing in for them: Mistral-7B's for the edge and
WizardLM-13B's for the hub OSS model (both answered every RouterBench row). They are stand-ins for
these tests only; ``cloud-hub calibrate`` writes the deployed models' own answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud_hub.calibrate.collect import pick_items, usable
from cloud_hub.calibrate.outcomes import Answer, write_outcomes
from cloud_hub.calibrate.plan import TierModel, deployed_tiers
from cloud_hub.demo.items import ROUTERBENCH, Item, load_items, unwrap
from shared.embedding import OnnxEmbedder
from shared.routing.datasets import OutcomeTable, load_outcomes

RB_SOURCES = tuple(f"{ROUTERBENCH}/{n}_train.csv" for n in ("arc_challenge", "winograde", "mbpp"))
STAND_INS = {"edge": "mistralai/mistral-7b-chat", "oss": "WizardLM/WizardLM-13B-V1.2"}


@dataclass(frozen=True)
class Fixture:
    items: list[Item]
    tiers: list[TierModel]
    picked: list[Item]  # train items, 40 per source
    extra: list[Item]  # other usable train items: rows only the replayed tiers answered
    eval_items: list[Item]  # written into the CSV too: the fit must leave them out
    csv: Path


def _stand_in(tables: list[OutcomeTable], model: str, items: list[Item]) -> list[Answer | None]:
    at: dict[str, tuple[OutcomeTable, int]] = {}
    for t in tables:
        for row, raw in enumerate(t.prompts):
            at.setdefault(unwrap(raw).strip(), (t, row))
    out: list[Answer | None] = []
    j = tables[0].models.index(model)
    for it in items:
        t, row = at[it.prompt]
        out.append(Answer(float(t.scores[row, j]), unwrap(t.responses[model][row]), float(t.costs[row, j])))
    return out


@pytest.fixture(scope="session")
def recorded(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    items, _ = load_items(data_dir, RB_SOURCES)
    tiers = deployed_tiers(tmp_path_factory.mktemp("home"))
    picked = pick_items(items, tiers, per_source=40, seed=1)
    chosen = {i.item_id for i in picked}
    extra = [i for i in items if usable(i, tiers) and i.item_id not in chosen][:200]
    eval_items = [i for i in items if i.split == "eval"][:15]
    rows = picked + eval_items
    tables = [load_outcomes(data_dir / s) for s in RB_SOURCES]
    by_tier = {t.tier.value: t.model for t in tiers}
    answers = {by_tier[tier]: _stand_in(tables, model, rows) for tier, model in STAND_INS.items()}
    csv = tmp_path_factory.mktemp("outcomes") / "live_train.csv"
    write_outcomes(csv, rows, answers)
    return Fixture(items, tiers, picked, extra, eval_items, csv)


@pytest.fixture(scope="session")
def embedder(models_dir: Path) -> Iterator[OnnxEmbedder]:
    with OnnxEmbedder(models_dir / "minilm-l6-v2-onnx") as emb:
        yield emb
