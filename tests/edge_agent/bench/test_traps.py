"""The trap pairs of ``traps.jsonl`` (negations, swapped entities, changed numbers or dates, changed
scope) are never served: the edge serves none at its shipped point, and each one its guards let
into the grey zone is refused by the hub's trap guard before any judge scores it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cloud_hub.cache.judge_guards import trap
from edge_agent.bench.cache_quality import load_set
from edge_agent.cache.verifier import Verdict, Verifier
from shared.routing.embed import load_default_embedder

TRAPS = Path(__file__).with_name("traps.jsonl")


def test_no_trap_is_served_at_the_edge_or_approved_at_the_hub(models_dir: Path) -> None:
    ps = load_set(TRAPS)
    assert ps.categories is not None and set(ps.categories) == {
        "negation",
        "swapped_entity",
        "number_date",
        "scope",
    }
    assert all(p.label == 0 for p in ps.pairs)
    embedder = load_default_embedder(models_dir)
    va = embedder.embed([p.a for p in ps.pairs])
    vb = embedder.embed([p.b for p in ps.pairs])
    cos = np.einsum("ij,ij->i", va, vb)
    v = Verifier.load()
    verdicts = [v.decide(float(c), p.a, p.b, "general").verdict for c, p in zip(cos, ps.pairs, strict=True)]
    assert Verdict.ACCEPT not in verdicts
    grey = [p for p, d in zip(ps.pairs, verdicts, strict=True) if d is Verdict.GREY]
    assert grey, "no trap reaches the grey zone: the hub's guard is not exercised"
    assert [(p.a, p.b) for p in grey if trap(p.a, p.b) is None] == []
    assert int((cos >= 0.8).sum()) > len(ps.pairs) // 2  # what a cosine-0.8 cache would serve
