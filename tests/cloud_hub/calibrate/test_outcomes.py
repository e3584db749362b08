"""The live outcomes CSV is a recorded-outcomes file like any other: the shared loader and the hub's
replay backend read back exactly what was written."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from cloud_hub.backends.replay import load_records
from cloud_hub.calibrate.collect import pick_items, usable
from cloud_hub.calibrate.outcomes import Answer, write_outcomes
from cloud_hub.demo.items import Item
from shared.routing.datasets import is_routerbench_csv, load_outcomes, unwrap_recorded
from tests.cloud_hub.calibrate.conftest import Fixture

ITEMS = [
    Item("t:1", "gsm8k", "math", "What is 6 x 7?", "42", "train"),
    Item("t:2", "mmlu", "mcq", "['not a list'] is a prompt that looks like one]", "B", "train"),
    Item(
        "t:3",
        "mbpp",
        "code",
        'Write a function that adds two numbers,\nwith a comma, and "quotes".',
        "x",
        "train",
    ),
]


def test_written_csv_round_trips_through_load_outcomes_and_replay(tmp_path: Path) -> None:
    answers: dict[str, list[Answer | None]] = {
        "smollm2-135m-instruct": [Answer(1.0, "6 x 7 = 42", 2.5e-7), Answer(0.0, "[A]", 1e-8), None],
        "qwen2.5-coder-0.5b-instruct": [
            Answer(1.0, "42", 3e-5),
            Answer(None, "", 1e-5),
            Answer(1.0, "def add(a, b):\n    return a + b", 4e-5),
        ],
    }
    path = tmp_path / "live.csv"
    write_outcomes(path, ITEMS, answers)
    table = load_outcomes(path)
    assert is_routerbench_csv(path)
    assert table.models == list(answers)
    assert [unwrap_recorded(p) for p in table.prompts] == [i.prompt for i in ITEMS]
    assert table.groups == ["gsm8k", "mmlu", "mbpp"]
    for j, model in enumerate(answers):
        for i, a in enumerate(answers[model]):
            score, cost = table.scores[i, j], table.costs[i, j]
            if a is None:
                assert math.isnan(score) and math.isnan(cost)
                continue
            assert (math.isnan(score) if a.score is None else score == a.score) and cost == a.cost_usd
            assert unwrap_recorded(table.responses[model][i]) == a.text
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["sample_id"] for r in rows] == ["t:1", "t:2", "t:3"]
    # the replay backend serves these answers under the model's name, at their recorded cost
    records = load_records(["qwen2.5-coder-0.5b-instruct"], [path])
    assert set(records) == {ITEMS[0].prompt, ITEMS[2].prompt}  # an ungraded answer is not a record
    rec = records[ITEMS[2].prompt]
    assert (rec.text, rec.score, rec.cost_usd) == ("def add(a, b):\n    return a + b", 1.0, 4e-5)


def test_picked_items_are_seeded_train_items_with_every_record(recorded: Fixture) -> None:
    again = pick_items(recorded.items, recorded.tiers, per_source=40, seed=1)
    assert [i.item_id for i in again] == [i.item_id for i in recorded.picked]
    other = pick_items(recorded.items, recorded.tiers, per_source=40, seed=2)
    assert {i.item_id for i in other} != {i.item_id for i in again}
    assert all(usable(i, recorded.tiers) and i.split == "train" and i.reference for i in again)
    counts = {s: sum(i.source == s for i in again) for s in {i.source for i in again}}
    assert counts == {"arc-challenge": 40, "winogrande": 40, "mbpp": 40}


def test_fixture_csv_keeps_its_eval_rows_for_the_join_to_drop(recorded: Fixture) -> None:
    table = load_outcomes(recorded.csv)
    assert len(table) == len(recorded.picked) + len(recorded.eval_items)
    assert not np.isnan(table.scores).all()
