"""Building the hub's image and video serving from ``HubSettings.images``.

The backend classes come from ``shared.backends.IMAGE_BACKENDS`` by name, imported only when the
section is enabled (torch and diffusers take seconds to import). Each entry's ``model`` is a hub
id or ``save_pretrained`` folder for ``from_pretrained``, or ``tiny`` for the random-weight build
of the same architecture. Everything here blocks: ``cloud-hub serve`` runs it in a thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol, cast

from cloud_hub.images.base import ImageBackend
from cloud_hub.images.jobs import MediaJobs
from cloud_hub.images.reuse import ReusePolicy
from cloud_hub.images.service import ImageService
from cloud_hub.images.store import AssetStore
from shared.backends import IMAGE_BACKENDS, load_class
from shared.config import HubSettings, ImageModelConfig
from shared.routing.embed import load_default_embedder

log = logging.getLogger(__name__)


class ImageBackendClass(Protocol):
    """What both diffusion backend classes offer as classmethods."""

    def tiny(self, *, default_steps: int = ..., threads: int | None = ...) -> ImageBackend: ...

    def from_pretrained(self, model: str, *, device: str = ..., default_steps: int = ...) -> ImageBackend: ...


def open_image_backend(cfg: ImageModelConfig, threads: int | None = None) -> ImageBackend:
    cls = cast(ImageBackendClass, load_class(IMAGE_BACKENDS, cfg.backend))
    if cfg.model == "tiny":
        return cls.tiny(default_steps=cfg.default_steps, threads=threads)
    return cls.from_pretrained(cfg.model, device=cfg.device, default_steps=cfg.default_steps)


def load_policy(settings: HubSettings) -> ReusePolicy:
    path = settings.images.policy_path
    if path is not None and path.is_file():
        return ReusePolicy.load(path)
    # the default threshold and skip table were calibrated on the tiny model; real weights need
    # their own (cloud_hub.images.calibrate → ReusePolicy.save → images.policy_path)
    log.warning("image reuse policy %s not found: serving the uncalibrated default", path or "(unset)")
    return ReusePolicy()


@dataclass
class ImageHosting:
    jobs: MediaJobs
    store: AssetStore
    backends: list[ImageBackend]

    def close(self) -> None:
        self.store.close()
        for backend in self.backends:
            backend.close()


def open_images(settings: HubSettings) -> ImageHosting | None:
    """The configured image and video serving, or ``None`` when the section is off."""
    cfg = settings.images
    if not cfg.enabled or (cfg.image is None and cfg.video is None):
        return None
    opened: list[ImageBackend] = []
    store: AssetStore | None = None
    try:
        image = open_image_backend(cfg.image, cfg.threads) if cfg.image is not None else None
        if image is not None:
            opened.append(image)
        video = open_image_backend(cfg.video, cfg.threads) if cfg.video is not None else None
        if video is not None:
            opened.append(video)
        store = AssetStore(cfg.store_path or settings.home / "assets.db", capacity=cfg.capacity)
        embedder = load_default_embedder(settings.models_dir)
        # an image-less hub still needs a backend in the service's first slot; requests for
        # images are refused by the job layer before they reach it
        first = image if image is not None else video
        assert first is not None
        service = ImageService(first, store, embedder, load_policy(settings), video_backend=video)
        jobs = MediaJobs(
            service,
            store,
            image_model=image.name if image is not None else None,
            video_model=video.name if video is not None else None,
            max_frame=settings.max_frame_bytes,
            image_usd_per_step=cfg.image.usd_per_step if cfg.image is not None else 0.0,
            video_usd_per_step=cfg.video.usd_per_step if cfg.video is not None else 0.0,
            max_jobs=cfg.max_jobs,
            ttl_s=cfg.job_ttl_s,
            fps=cfg.video_fps,
        )
    except BaseException:
        if store is not None:
            store.close()
        for backend in opened:
            backend.close()
        raise
    log.info("serving images with %s, video with %s", *(b.name if b else "nothing" for b in (image, video)))
    return ImageHosting(jobs, store, opened)
