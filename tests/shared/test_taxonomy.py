"""The model ids that let the router choose: one definition the edge and the hub both read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.taxonomy import (
    AUTO_MODEL,
    AUTO_MODELS,
    HUB_CHOICE_MODELS,
    HUB_MODEL,
    HUB_MODEL_PREFIX,
    named_hub_model,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_hub_chooses_for_every_word_the_edge_lets_the_router_choose_with() -> None:
    # an edge forwards its client's model id to the hub unless it strips a ``hub:`` prefix, so every
    # word that routes freely at the edge must also leave the choice to the hub
    assert AUTO_MODEL in AUTO_MODELS
    assert AUTO_MODELS < HUB_CHOICE_MODELS
    assert HUB_MODEL in HUB_CHOICE_MODELS
    # what the edge sends when its client named no hub model
    assert "" in HUB_CHOICE_MODELS
    # "hub" forces the hub at the edge, so it must not also mean "route freely" there
    assert HUB_MODEL not in AUTO_MODELS


@pytest.mark.parametrize(
    ("model", "named"),
    [
        (f"{HUB_MODEL_PREFIX}frontier-echo", "frontier-echo"),
        (f"{HUB_MODEL_PREFIX}tier:oss", "tier:oss"),  # the hub reads tier aliases itself
        (HUB_MODEL_PREFIX, None),  # names nothing
        (HUB_MODEL, None),
        ("hubble", None),
        (AUTO_MODEL, None),
        ("", None),
    ],
)
def test_named_hub_model(model: str, named: str | None) -> None:
    assert named_hub_model(model) == named


def test_the_routing_docs_list_the_words_the_hub_chooses_for() -> None:
    text = (DOCS / "routing-taxonomy.md").read_text()
    found = re.search(r"names none \((.*?)\) lets the hub choose", text, re.DOTALL)
    assert found, "docs/routing-taxonomy.md no longer says which model ids let the hub choose"
    listed = {word.strip('"') for word in re.findall(r"`([^`]*)`", found.group(1))}
    assert listed == HUB_CHOICE_MODELS


def test_the_readme_examples_use_documented_model_ids() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    models = set(re.findall(r'"model": "([^"]*)"', readme))
    assert models
    for model in models:
        assert model in AUTO_MODELS or model == HUB_MODEL or named_hub_model(model), model
