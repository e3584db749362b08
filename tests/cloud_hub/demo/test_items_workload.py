from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from cloud_hub.demo.items import DEFAULT_SOURCES, Item, load_items, split_of, unwrap
from cloud_hub.demo.workload import build_workload, describe
from shared.paraphrase import qqp_split


@pytest.fixture(scope="module")
def items(data_dir: Path) -> list[Item]:
    loaded, _ = load_items(data_dir, DEFAULT_SOURCES)
    return loaded


def test_unwrap_takes_the_string_out_of_a_list_repr() -> None:
    assert unwrap("['C\\n']") == "C\n"
    assert unwrap("plain text") == "plain text"
    assert unwrap("['not closed") == "['not closed"


def test_items_carry_gold_and_recorded_outcomes(items: list[Item]) -> None:
    sources = Counter(i.source for i in items)
    assert {"arc-challenge", "winogrande", "mbpp", "gsm8k", "mmlu", "mt_bench"} <= set(sources)
    for it in items:
        if it.kind == "mcq":
            assert it.reference in {"A", "B", "C", "D"}
        if it.kind == "math":
            assert it.reference is not None and it.reference.lstrip("-").replace(".", "").isdigit()
        if it.kind == "code":
            assert it.reference is not None and "assert" in it.reference
        assert not it.prompt.startswith("['"), "RouterBench list reprs are unwrapped"
    gsm = [i for i in items if i.source == "gsm8k"]
    assert all("gpt-4-1106-preview" in i.recorded for i in gsm)


def test_split_is_a_fixed_hash_of_the_prompt(items: list[Item]) -> None:
    assert all(i.split == split_of(i.prompt) for i in items)
    share = sum(i.split == "train" for i in items) / len(items)
    assert 0.45 < share < 0.55


def test_consensus_gold_agrees_with_recorded_scores(items: list[Item], data_dir: Path) -> None:
    """The inferred ARC/Winogrande gold is what GPT-4 answered whenever GPT-4 was recorded right."""
    from cloud_hub.evaluation.scorers import extract_letter
    from shared.routing.datasets import load_outcomes

    table = load_outcomes(data_dir / "routing/routerbench/arc_challenge_train.csv")
    by_prompt = {i.prompt: i for i in items if i.source == "arc-challenge"}
    col = table.models.index("gpt-4-1106-preview")
    checked = 0
    for row, raw in enumerate(table.prompts):
        it = by_prompt.get(unwrap(raw).strip())
        if it is None or table.scores[row, col] != 1.0:
            continue
        assert extract_letter(unwrap(table.responses["gpt-4-1106-preview"][row])) == it.reference
        checked += 1
    assert checked > 100


def test_workload_is_seeded_held_out_and_repeats_with_skew(items: list[Item], data_dir: Path) -> None:
    pairs = qqp_split("eval", data_dir)
    a = build_workload(items, pairs, 200, repeat_share=0.31, seed=3)
    b = build_workload(items, pairs, 200, repeat_share=0.31, seed=3)
    c = build_workload(items, pairs, 200, repeat_share=0.31, seed=4)
    assert [r.item.item_id for r in a] == [r.item.item_id for r in b]
    assert [r.item.item_id for r in a] != [r.item.item_id for r in c]
    assert len(a) == 200
    assert all(r.item.split == "eval" for r in a), "the benchmark only reports on held-out rows"
    repeats = [r for r in a if r.repeat]
    assert len(repeats) == 62
    by_seq = {r.seq: r for r in a}
    for r in repeats:
        assert r.original is not None and r.original < r.seq
        if r.repeat == "exact":
            assert by_seq[r.original].item.item_id == r.item.item_id
    paraphrases = [
        (by_seq[r.original or 0].item.prompt, r.item.prompt) for r in repeats if r.repeat == "paraphrase"
    ]
    held_out = {(p.a.strip(), p.b.strip()) for p in pairs}
    assert paraphrases and all(pair in held_out for pair in paraphrases)
    # popularity skew: the most repeated item is asked far more often than the median one
    counts = Counter(r.item.item_id for r in a if r.repeat == "exact")
    assert counts.most_common(1)[0][1] >= 3
    info = describe(a)
    assert len(info["tenants"]) == 3  # type: ignore[arg-type]


def test_repeat_share_zero_has_no_repeats(items: list[Item], data_dir: Path) -> None:
    w = build_workload(items, qqp_split("eval", data_dir), 80, repeat_share=0.0)
    assert not [r for r in w if r.repeat]
    with pytest.raises(ValueError):
        build_workload(items, [], 10, repeat_share=1.0)


def test_user_dataset_alone_gets_equal_shares(items: list[Item]) -> None:
    mine = [i for i in items if i.source in {"winogrande", "gsm8k"}]
    w = build_workload(mine, [], 40, repeat_share=0.0)
    counts = Counter(r.item.source for r in w)
    assert counts == {"winogrande": 20, "gsm8k": 20}
