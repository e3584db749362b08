from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloud_hub.images.calibrate import calibrate
from cloud_hub.images.diffusers_backend import DiffusersImageBackend
from cloud_hub.images.reuse import ReusePolicy
from cloud_hub.images.service import ImageService
from cloud_hub.images.store import AssetStore
from cloud_hub.images.video_backend import WanVideoBackend
from shared.routing.embed import TextEmbedder, load_default_embedder

SIDE = 32
STEPS = 8
CALIBRATION_PROMPTS = ["a lighthouse on a cliff at dusk", "a bowl of ramen, studio photo"]


@pytest.fixture(scope="session")
def backend() -> DiffusersImageBackend:
    return DiffusersImageBackend.tiny(threads=1, default_steps=STEPS)


@pytest.fixture(scope="session")
def video_backend() -> WanVideoBackend:
    return WanVideoBackend.tiny(threads=1, default_steps=STEPS)


@pytest.fixture(scope="session")
def embedder(models_dir: Path) -> TextEmbedder:
    return load_default_embedder(models_dir)


@pytest.fixture(scope="session")
def policy(backend: DiffusersImageBackend) -> ReusePolicy:
    calibrated, _ = calibrate(backend, CALIBRATION_PROMPTS, width=SIDE, height=SIDE, steps=STEPS, seeds=2)
    return calibrated


@pytest.fixture
def make_service(
    tmp_path: Path,
    backend: DiffusersImageBackend,
    video_backend: WanVideoBackend,
    embedder: TextEmbedder,
    policy: ReusePolicy,
) -> Iterator[Callable[[], ImageService]]:
    stores: list[AssetStore] = []

    def make() -> ImageService:
        store = AssetStore(tmp_path / f"assets-{len(stores)}.db")
        stores.append(store)
        return ImageService(backend, store, embedder, policy, video_backend=video_backend)

    yield make
    for store in stores:
        store.close()
