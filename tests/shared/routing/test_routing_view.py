from __future__ import annotations

from pathlib import Path

import numpy as np

from cloud_hub.demo.items import load_items
from shared.routing.embed import ROUTING_VIEW_CHARS, load_default_embedder, routing_view


def test_short_prompts_are_read_whole() -> None:
    assert routing_view("  What is TCP?  ") == "What is TCP?"


def test_few_shot_prompts_are_told_apart_by_their_question(data_dir: Path, models_dir: Path) -> None:
    items, _ = load_items(data_dir, ["routing/routerbench/arc_challenge_train.csv"])
    a, b = items[0].prompt, items[1].prompt
    assert len(a) > ROUTING_VIEW_CHARS and len(b) > ROUTING_VIEW_CHARS
    emb = load_default_embedder(models_dir)
    whole = emb.embed([a, b])
    viewed = emb.embed([routing_view(a), routing_view(b)])
    # the shared worked examples fill the embedder's window: whole prompts look identical
    assert float(np.dot(whole[0], whole[1])) > 0.99
    assert float(np.dot(viewed[0], viewed[1])) < 0.95
    assert routing_view(a).endswith(a.strip()[-50:])
