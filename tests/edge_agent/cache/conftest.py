from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.cache.embedding import load_embedder
from shared.embedding import Embedder


@pytest.fixture(scope="session")
def embedder(models_dir: Path) -> Embedder:
    return load_embedder(models_dir)
