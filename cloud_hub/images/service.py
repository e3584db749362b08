"""``ImageService``: the hub's entry point for image and video generation with asset reuse.

``await generate(ImageRequest)`` and ``await generate_video(VideoRequest)`` are what the link
handler calls; both validate, then run in a worker thread (diffusers blocks, and one pipeline's
scheduler is stateful, so one lock serialises the backends). For every asset returned the
service plans a reuse (``reuse.py``), renders, checks the variation guarantee, escalates when
it fails, records the delivery and offers the result to the store.

``steps_run`` in a trace counts every attempt, failed ones included: the saving it implies
against ``steps_total`` is what the hub really saved.
"""

from __future__ import annotations

import asyncio
import io
import secrets
import threading
import time
import uuid
from dataclasses import dataclass

import numpy as np
from PIL import Image

from cloud_hub.images.base import F32, U8, ImageBackend, Rendered, RenderSpec
from cloud_hub.images.features import F16, ThumbnailDistance
from cloud_hub.images.reuse import Plan, ReusePolicy, clean_latent, pick_latent
from cloud_hub.images.store import Asset, AssetStore, GroupKey
from shared.images import (
    GeneratedImage,
    GeneratedVideo,
    ImageRequest,
    ImageResult,
    ReuseMode,
    ReuseTrace,
    VideoRequest,
    VideoResult,
    validate_image_request,
)
from shared.routing.embed import TextEmbedder

MAX_RESEEDS = 3


def encode_png(frame: U8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True, slots=True)
class _Job:
    tenant: str
    user: str
    prompt: str
    negative: str
    width: int
    height: int
    frames: int
    steps: int
    guidance: float
    mode: ReuseMode
    embedding: F32
    popularity: int
    group: GroupKey


@dataclass(frozen=True, slots=True)
class _Made:
    asset: Asset
    pixels: U8
    trace: ReuseTrace


class ImageService:
    def __init__(
        self,
        backend: ImageBackend,
        store: AssetStore,
        embedder: TextEmbedder,
        policy: ReusePolicy,
        *,
        video_backend: ImageBackend | None = None,
        history: int = 1000,
    ) -> None:
        self._backend = backend
        self._video = video_backend
        self._store = store
        self._embedder = embedder
        self._policy = policy
        self._distance = ThumbnailDistance()
        self._history = history
        self._lock = threading.Lock()

    @property
    def policy(self) -> ReusePolicy:
        return self._policy

    async def generate(self, request: ImageRequest) -> ImageResult:
        validate_image_request(request)
        return await asyncio.to_thread(self.generate_sync, request)

    async def generate_video(self, request: VideoRequest) -> VideoResult:
        validate_image_request(request)
        return await asyncio.to_thread(self.generate_video_sync, request)

    def generate_sync(self, req: ImageRequest) -> ImageResult:
        validate_image_request(req)
        job = self._job(
            self._backend,
            req.tenant,
            req.user,
            req.prompt,
            req.negative_prompt,
            req.width,
            req.height,
            1,
            req.steps,
            req.guidance_scale,
            req.reuse,
        )
        base_seed = req.seed if req.seed is not None else secrets.randbits(31)
        local: list[Asset] = []  # this request's own results: sources for its next images
        images = []
        for i in range(req.n):
            # one asset at a time: requests interleave between a grid's pictures, never inside one
            with self._lock:
                made = self._one(self._backend, job, base_seed + i, local)
            images.append(
                GeneratedImage(
                    made.asset.id, made.asset.png, req.width, req.height, made.asset.seed, made.trace
                )
            )
        return ImageResult(images=images, model=self._backend.name)

    def generate_video_sync(self, req: VideoRequest) -> VideoResult:
        validate_image_request(req)
        if self._video is None:
            raise ValueError("this hub serves no video model")
        job = self._job(
            self._video,
            req.tenant,
            req.user,
            req.prompt,
            req.negative_prompt,
            req.width,
            req.height,
            req.frames,
            req.steps,
            req.guidance_scale,
            req.reuse,
        )
        seed = req.seed if req.seed is not None else secrets.randbits(31)
        with self._lock:
            made = self._one(self._video, job, seed, [])
        video = GeneratedVideo(
            made.asset.id, list(made.asset.frame_pngs), req.width, req.height, made.asset.seed, made.trace
        )
        return VideoResult(video=video, model=self._video.name)

    def _job(
        self,
        backend: ImageBackend,
        tenant: str,
        user: str,
        prompt: str,
        negative: str,
        width: int,
        height: int,
        frames: int,
        steps: int,
        guidance: float,
        mode: ReuseMode,
    ) -> _Job:
        vec = np.asarray(self._embedder.embed([prompt])[0], dtype=np.float32)
        vec = vec / max(float(np.linalg.norm(vec)), 1e-12)
        popularity = self._store.note_request(tenant, prompt)
        group: GroupKey = (tenant, backend.latent_space, width, height, frames)
        return _Job(
            tenant,
            user,
            prompt,
            negative,
            width,
            height,
            frames,
            steps or backend.default_steps,
            guidance,
            mode,
            vec,
            popularity,
            group,
        )

    # --- one returned asset -------------------------------------------------------------------

    def _one(self, backend: ImageBackend, job: _Job, seed: int, local: list[Asset]) -> _Made:
        began = time.perf_counter()
        seen = self._store.delivered_thumbs(job.tenant, job.user, self._history)
        if job.mode == "exact_ok":
            exact = self._exact(job, seen, began)
            if exact is not None:
                return exact
        best, source = self._best_source(job, local)
        plan = self._policy.plan(job.mode, best)
        steps_run, attempts = 0, 0
        while True:
            attempts += 1
            reused = (
                None
                if plan.kind == "fresh" or source is None
                else self._reuse(backend, job, plan, source, seed)
            )
            if reused is None:
                plan = Plan("fresh", similarity=plan.similarity)
                rendered = backend.fresh(self._spec(job, seed, 0))
            else:
                rendered = reused
            steps_run += rendered.steps_run
            thumb = self._distance.thumb(rendered.pixels)
            against = seen + ([source.thumb] if plan.kind != "fresh" and source is not None else [])
            distance = self._distance.nearest(thumb, against)
            if distance >= self._policy.threshold or (plan.kind == "fresh" and attempts > MAX_RESEEDS):
                break
            # short of the guarantee: more fresh noise, or for a fresh image (same seed asked
            # twice) another seed
            if plan.kind == "fresh":
                seed = (seed + 0x9E3779B1) % (2**31)
            else:
                plan = self._policy.escalate(plan) if attempts < self._policy.max_attempts else Plan("fresh")
        trace = ReuseTrace(
            route="fresh" if plan.kind == "fresh" else "asset_reuse",
            kind=plan.kind,
            steps_total=job.steps,
            steps_run=steps_run,
            source_asset_id=source.id if plan.kind != "fresh" and source is not None else "",
            similarity=plan.similarity,
            distance=None if distance == float("inf") else distance,
            threshold=self._policy.threshold,
            escalations=attempts - 1,
            wall_s=time.perf_counter() - began,
        )
        asset = self._asset(job, rendered, thumb, seed, trace.source_asset_id)
        self._store.add(asset, popularity=job.popularity)
        local.append(asset)
        self._store.deliver(job.tenant, job.user, asset.id, thumb)
        if trace.source_asset_id:
            self._store.mark_used(trace.source_asset_id)
        return _Made(asset, rendered.pixels, trace)

    def _exact(self, job: _Job, seen: list[F16], began: float) -> _Made | None:
        asset_id = self._store.exact(job.group, job.prompt, job.user)
        asset = None if asset_id is None else self._store.get(asset_id, with_latents=False)
        if asset is None:
            return None
        self._store.deliver(job.tenant, job.user, asset.id, asset.thumb)
        self._store.mark_used(asset.id)
        distance = self._distance.nearest(asset.thumb, seen)
        trace = ReuseTrace(
            route="asset_reuse",
            kind="exact",
            steps_total=job.steps,
            steps_run=0,
            source_asset_id=asset.id,
            similarity=1.0,
            distance=None if distance == float("inf") else distance,
            threshold=self._policy.threshold,
            wall_s=time.perf_counter() - began,
        )
        pixels = np.asarray(Image.open(io.BytesIO(asset.png)).convert("RGB"))
        return _Made(asset, pixels, trace)

    def _best_source(self, job: _Job, local: list[Asset]) -> tuple[tuple[str, float] | None, Asset | None]:
        if job.mode == "fresh":
            return None, None
        ranked = self._store.nearest(job.group, job.embedding, k=4)
        ranked += [(a.id, float(a.embedding @ job.embedding)) for a in local]
        for asset_id, sim in sorted(ranked, key=lambda r: -r[1]):
            asset = next((a for a in local if a.id == asset_id), None) or self._store.get(asset_id)
            if asset is not None and asset.latents:
                return (asset_id, sim), asset
        return None, None

    def _reuse(
        self, backend: ImageBackend, job: _Job, plan: Plan, source: Asset, seed: int
    ) -> Rendered | None:
        start = plan.start(job.steps)
        levels = backend.levels(job.steps)
        latent = pick_latent(source.latents, levels[start])
        if latent is None:  # nothing cached early enough for this schedule
            return None
        spec = self._spec(job, seed, start)
        if plan.kind == "recomposition":
            known = clean_latent(source.latents)
            if known is not None:
                keep = self._policy.keep_mask(tuple(latent.data.shape))
                return backend.recompose(spec, latent, known, keep, start)
        return backend.resume(spec, latent, start)

    def _spec(self, job: _Job, seed: int, start: int) -> RenderSpec:
        return RenderSpec(
            prompt=job.prompt,
            width=job.width,
            height=job.height,
            steps=job.steps,
            seed=seed,
            guidance_scale=job.guidance,
            negative_prompt=job.negative,
            harvest=self._policy.harvest_steps(job.steps, start),
            frames=job.frames,
            eta=self._policy.eta if start > 0 else 0.0,
        )

    def _asset(self, job: _Job, r: Rendered, thumb: F16, seed: int, source_id: str) -> Asset:
        frames = r.pixels if r.pixels.ndim == 4 else r.pixels[None]
        pngs = tuple(encode_png(f) for f in frames)
        return Asset(
            id=uuid.uuid4().hex,
            tenant=job.tenant,
            prompt=job.prompt,
            embedding=job.embedding,
            latent_space=job.group[1],
            width=job.width,
            height=job.height,
            frames=job.frames,
            steps=job.steps,
            seed=seed,
            png=pngs[0],
            thumb=thumb,
            source_id=source_id,
            frame_pngs=pngs if job.frames > 1 else (),
            latents=r.latents,
        )
