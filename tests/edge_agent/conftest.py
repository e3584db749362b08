from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.backends.llamacpp import LlamaCppBackend
from models.manifest import artifact_path

SMOLLM = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def smollm_gguf(models_dir: Path) -> Path:
    return artifact_path(SMOLLM, models_dir)


@pytest.fixture(scope="session")
def smollm_backend(smollm_gguf: Path) -> Iterator[LlamaCppBackend]:
    """One loaded SmolLM2 for every test that needs a model but not a good answer."""
    backend = LlamaCppBackend(smollm_gguf, name=SMOLLM, n_ctx=2048, n_threads=1)
    yield backend
    asyncio.run(backend.close())
