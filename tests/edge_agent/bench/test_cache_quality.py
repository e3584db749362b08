from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from edge_agent.bench.cache_quality import best_point, load_set, score_pairs
from edge_agent.cache.verifier import Verifier
from shared.paraphrase import Pair


def test_best_point_keeps_false_hits_at_two_percent_on_top_of_a_served_base() -> None:
    # 49 right then 1 wrong then 50 wrong, by score: 50 served with 1 wrong is the best point
    labels = np.array([1] * 49 + [0] * 51, dtype=np.int64)
    scores = np.linspace(1.0, 0.0, 100)
    got = best_point(scores, labels)
    assert (got["hits"], got["false_hit_rate"], got["recall"]) == (50, 0.02, 1.0)
    # a base that already holds a wrong hit leaves no room for the sweep's wrong one
    base = np.zeros(100, dtype=bool)
    base[60] = True
    swept = best_point(np.where(base, -np.inf, scores), labels, base=base)
    assert swept["hits"] == 50 and swept["false_hit_rate"] == 0.02 and swept["recall"] == round(49 / 49, 4)
    assert best_point(np.full(100, -np.inf), labels)["hits"] == 0


def test_pairs_file_with_categories_is_broken_down(tmp_path: Path) -> None:
    rows = [
        {
            "text_a": "How do I boil an egg?",
            "text_b": "how do i boil an egg",
            "label": 1,
            "category": "repeat",
        },
        {"text_a": "What is 2+2?", "text_b": "What is 2+3?", "label": 0, "category": "number_trap"},
        {"text_a": "How do I boil an egg?", "text_b": "How long do I boil an egg?", "label": 0},
    ]
    path = tmp_path / "pairs.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    ps = load_set(path)
    assert ps.categories == ["repeat", "number_trap", ""]
    v = Verifier.load()
    cos = np.array([0.99, 0.97, 0.95])
    judged = np.array([0.0, 1.0, 1.0])  # a judge that approves every grey pair it sees
    got = score_pairs(v, ps.pairs, cos, judged, 0.5, ps.categories)
    assert got["pairs"] == 3 and got["hits"] == 1 and got["false_hit_rate"] == 0.0  # the repeat
    assert got["false_hit_rate_by_category"] == {"": 0.0, "number_trap": 0.0, "repeat": 0.0}
    assert got["by_category"]["repeat"]["edge"]["hits"] == 1
    assert got["edge"]["default"]["point"] == "safe"
    assert got["edge_judge"]["judge_calls"] == got["edge"]["grey"]
    assert {"pairs", "false_hit_rate", "recall", "baseline"} <= got.keys()
    assert got["baseline"]["hits"] == 3  # a cosine-0.8 cache serves the trap too


def test_without_a_judge_only_the_edge_is_reported() -> None:
    pairs = [Pair("How do I boil an egg?", "how do i boil an egg", 1)] * 3
    got = score_pairs(Verifier.load(), pairs, np.full(3, 0.99), None, 1.0)
    assert "edge_judge" not in got and "false_hit_rate_by_category" not in got
    assert got["recall"] == 1.0


@pytest.mark.slow
def test_the_shipped_point_serves_at_most_two_percent_wrong_on_qqp_eval(
    data_dir: Path, models_dir: Path
) -> None:
    # embeds the eval split once (minutes on two cores); later runs read the cached vectors
    from edge_agent.cache.embedding import load_embedder
    from shared.pair_vectors import pair_cosines
    from shared.paraphrase import qqp_split

    pairs = qqp_split("eval", data_dir)
    cos = pair_cosines(load_embedder(models_dir), pairs)
    got = score_pairs(Verifier.load(), pairs, cos, None, 1.0)
    assert got["false_hit_rate"] <= 0.02
    assert got["edge"]["default"]["point"] == "safe"
