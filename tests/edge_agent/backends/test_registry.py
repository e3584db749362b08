"""Choosing the edge's local backend by ``local_model.backend`` (``shared.backends.EDGE_BACKENDS``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge_agent.assemble import load_backend
from edge_agent.backends.base import LocalBackendFactory
from edge_agent.backends.llamacpp import LlamaCppBackend
from shared.backends import EDGE_BACKENDS, load_class
from shared.config import EdgeSettings, LocalModelConfig

# The type checker holds each class to the factory protocol; the test holds the table to this list.
FACTORIES: dict[str, LocalBackendFactory] = {"llamacpp": LlamaCppBackend}


def test_the_table_names_exactly_these_factories() -> None:
    assert {name: load_class(EDGE_BACKENDS, name) for name in EDGE_BACKENDS} == FACTORIES


def test_the_configured_backend_is_built_from_the_local_model_entry(
    tmp_path: Path, smollm_gguf: Path
) -> None:
    local = LocalModelConfig(name="tiny", path=smollm_gguf, n_ctx=512, n_threads=1)
    backend = load_backend(EdgeSettings(home=tmp_path, local_model=local))
    try:
        assert isinstance(backend, LlamaCppBackend)
        assert (backend.model_name, backend.n_ctx, backend.model_path) == ("tiny", 512, smollm_gguf)
    finally:
        asyncio.run(backend.close())


def test_an_unvalidated_unknown_backend_is_refused(tmp_path: Path) -> None:
    local = LocalModelConfig.model_construct(backend="onnx")  # skips validation, as a bug might
    with pytest.raises(ValueError, match="unknown backend 'onnx'; known: llamacpp"):
        load_backend(EdgeSettings(home=tmp_path, local_model=local))
