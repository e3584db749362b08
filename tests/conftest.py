from __future__ import annotations

from pathlib import Path

import pytest

from shared import paths


@pytest.fixture(scope="session")
def models_dir() -> Path:
    d = paths.models_dir()
    if not d.is_dir():
        pytest.fail(f"models directory {d} is missing: run `make models` (the test command does)")
    return d


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = paths.data_dir()
    if not d.is_dir():
        pytest.fail(f"data directory {d} is missing: set EDGEROUTE_DATA_DIR or `cloud-hub data download DIR`")
    return d


# vLLM's engine start alone takes minutes on two loaded cores.
SLOW_TIMEOUT_S = 1200


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))
