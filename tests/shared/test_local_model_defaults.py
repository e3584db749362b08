"""The edge's default local model and thread count."""

from __future__ import annotations

import pytest

from models.manifest import Kind, load_manifest
from shared.config import EdgeSettings, HubSettings, LocalModelConfig


def test_the_default_edge_model_is_an_installable_gguf_unlike_the_hub_default() -> None:
    name = LocalModelConfig().name
    assert name == "smollm2-135m-instruct"
    assert load_manifest().get(name).kind is Kind.GGUF
    assert name != HubSettings().default_model
    assert EdgeSettings().local_model.name == name


@pytest.mark.parametrize(("cores", "threads"), [(None, 1), (1, 1), (2, 1), (3, 1), (8, 4), (16, 8)])
def test_threads_default_to_half_the_cores(
    monkeypatch: pytest.MonkeyPatch, cores: int | None, threads: int
) -> None:
    monkeypatch.setattr("shared.config.os.cpu_count", lambda: cores)
    assert LocalModelConfig().n_threads == threads
    assert LocalModelConfig(n_threads=3).n_threads == 3  # an explicit setting still wins
