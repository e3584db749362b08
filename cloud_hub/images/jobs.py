"""Image and video jobs for edges: the link's side of ``ImageService``.

An image job (``MediaJob`` with ``kind="image"``) is answered by one ``MediaStatus`` once its
pictures are done; a video job is answered at once with its job id, and the edge polls it
(``MediaPoll``). Either way the result stays here for ``ttl_s`` so the edge can fetch it.

Frames never exceed the codec's limit, nor the one the edge announced (``max_bytes``): a
``done`` status carries each asset's bytes inline while they fit, and the edge fetches the rest
in ``MediaChunk``s of at most that size, checking the SHA-256 the status named.

Scoping: assets belong to ``<edge id>:<tenant hash>``. The edge id is the key the CURVE handshake
proved, so no edge can reach another edge's tenants, whatever tenant hash it sends; jobs are
keyed by edge id too, so an edge can poll and fetch only its own.

Generation runs in a worker thread (``ImageService`` blocks; its lock serialises the models),
so the hub's event loop keeps serving heartbeats, text and other edges meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import msgspec
from PIL import Image

from cloud_hub.images.service import ImageService
from cloud_hub.images.store import AssetStore
from shared.images import (
    REUSE_MODES,
    GeneratedImage,
    GeneratedVideo,
    ImageRequest,
    ImageRequestError,
    VideoRequest,
    trace_step,
    validate_image_request,
)
from shared.wire import Body, Error, MediaAsset, MediaChunk, MediaFetch, MediaJob, MediaPoll, MediaStatus

log = logging.getLogger(__name__)

Send = Callable[[Body], Awaitable[None]]
State = Literal["queued", "running", "done", "failed"]
# room for the envelope and ids around a chunk, and for metadata and traces around inline assets
CHUNK_MARGIN = 4096
STATUS_MARGIN = 32 * 1024
MAX_RECEIVED = 256  # receipts one job may report; an edge sends its latest unreported ones


def encode_apng(frames_png: list[bytes], fps: int) -> bytes:
    """One animated PNG of the frames: lossless, played by browsers, written by Pillow alone."""
    frames = [Image.open(io.BytesIO(png)).convert("RGB") for png in frames_png]
    buf = io.BytesIO()
    frames[0].save(
        buf, format="PNG", save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0
    )
    return buf.getvalue()


@dataclass
class _Job:
    job_id: str
    edge_id: str
    kind: Literal["image", "video"]
    model: str
    state: State = "queued"
    finished: float | None = None  # monotonic
    assets: list[MediaAsset] = field(default_factory=list)  # metadata; the bytes are in ``blobs``
    blobs: list[bytes] = field(default_factory=list)
    cost_usd: float = 0.0
    error_code: str = ""
    error: str = ""
    error_param: str = ""


@dataclass(frozen=True, slots=True)
class _Rendered:
    assets: list[MediaAsset]
    blobs: list[bytes]
    steps_run: int


class MediaJobs:
    def __init__(
        self,
        service: ImageService,
        store: AssetStore,
        *,
        image_model: str | None,
        video_model: str | None,
        max_frame: int,
        image_usd_per_step: float = 0.0,
        video_usd_per_step: float = 0.0,
        max_jobs: int = 16,
        ttl_s: float = 3600.0,
        fps: int = 16,
    ) -> None:
        self._service = service
        self._store = store
        self._models = {"image": image_model, "video": video_model}
        self._prices = {"image": image_usd_per_step, "video": video_usd_per_step}
        self._max_frame = max_frame
        self._max_jobs = max_jobs
        self._ttl_s = ttl_s
        self._fps = fps
        self._jobs: dict[tuple[str, str], _Job] = {}

    @property
    def models(self) -> list[str]:
        return [m for m in self._models.values() if m]

    async def handle(self, edge_id: str, body: MediaJob | MediaPoll | MediaFetch, send: Send) -> None:
        """Answer one media message of ``edge_id``; a job's task lasts until it is done."""
        self._expire()
        if isinstance(body, MediaJob):
            await self._submit(edge_id, body, send)
        elif isinstance(body, MediaPoll):
            await send(self._poll(edge_id, body))
        else:
            await send(self._fetch(edge_id, body))

    # --- jobs ---------------------------------------------------------------------------------

    async def _submit(self, edge_id: str, body: MediaJob, send: Send) -> None:
        model = self._models[body.kind]
        if model is None:
            await send(Error(body.request_id, "unknown_model", f"this hub serves no {body.kind} model"))
            return
        if body.model and body.model != model:
            message = f"this hub serves the {body.kind} model {model!r}, not {body.model!r}"
            await send(Error(body.request_id, "unknown_model", message))
            return
        active = sum(1 for j in self._jobs.values() if j.state in ("queued", "running"))
        if active >= self._max_jobs:
            busy = f"the hub is at its limit of {self._max_jobs} image and video jobs"
            await send(Error(body.request_id, "overloaded", busy, retryable=True))
            return
        try:
            request = self._request(edge_id, body)
            validate_image_request(request)
        except ImageRequestError as exc:
            await send(Error(body.request_id, "invalid_request", str(exc)))
            return
        job = _Job(f"mj-{uuid.uuid4().hex}", edge_id, body.kind, model)
        self._jobs[(edge_id, job.job_id)] = job
        limit = self._limit(body.max_bytes)
        if body.kind == "video":
            await send(self._status(body.request_id, job, limit))
        await self._run(job, request, body.received[:MAX_RECEIVED])
        if body.kind == "image":
            await send(self._status(body.request_id, job, limit))

    def _request(self, edge_id: str, body: MediaJob) -> ImageRequest | VideoRequest:
        if body.reuse not in REUSE_MODES:
            raise ImageRequestError(f"reuse must be one of {', '.join(REUSE_MODES)}", "reuse")
        kind: type[ImageRequest | VideoRequest] = ImageRequest if body.kind == "image" else VideoRequest
        # each request type takes the job's fields of the same names (``n`` for images, ``frames``
        # for videos); the tenant is scoped to the edge that proved its key
        request = msgspec.convert(body, kind, from_attributes=True)
        return msgspec.structs.replace(request, tenant=f"{edge_id}:{body.tenant}")

    async def _run(self, job: _Job, request: ImageRequest | VideoRequest, received: list[str]) -> None:
        job.state = "running"
        try:
            done = await asyncio.to_thread(self._render, request, received)
        except ImageRequestError as exc:
            job.state, job.error_code, job.error, job.error_param = (
                "failed",
                "invalid_request",
                str(exc),
                exc.param,
            )
        except Exception:
            log.exception("%s job %s failed", job.kind, job.job_id)
            job.state, job.error_code, job.error = "failed", "backend_error", f"the {job.kind} model failed"
        else:
            job.assets, job.blobs = done.assets, done.blobs
            job.cost_usd = done.steps_run * self._prices[job.kind]
            job.state = "done"
        finally:
            job.finished = time.monotonic()

    def _render(self, request: ImageRequest | VideoRequest, received: list[str]) -> _Rendered:
        """Blocking: runs in a worker thread."""
        for asset_id in received:
            # the edge gave these to this user from its own store; only the tenant's own count
            asset = self._store.get(asset_id, with_latents=False)
            if asset is not None and asset.tenant == request.tenant:
                self._store.deliver(request.tenant, request.user, asset_id, asset.thumb)
        made: list[tuple[GeneratedImage | GeneratedVideo, bytes, str, int]]  # result, bytes, type, frames
        if isinstance(request, ImageRequest):
            images = self._service.generate_sync(request).images
            made = [(img, img.png, "image/png", 1) for img in images]
        else:
            video = self._service.generate_video_sync(request).video
            apng = encode_apng(video.frames_png, self._fps)
            made = [(video, apng, "image/apng", len(video.frames_png))]
        assets = [
            MediaAsset(
                asset_id=item.asset_id,
                content_type=content_type,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                width=item.width,
                height=item.height,
                seed=item.seed,
                trace=trace_step(item.trace),
                steps_total=item.trace.steps_total,
                steps_run=item.trace.steps_run,
                frames=frames,
            )
            for item, data, content_type, frames in made
        ]
        return _Rendered(assets, [data for _, data, _, _ in made], sum(a.steps_run for a in assets))

    # --- answers ------------------------------------------------------------------------------

    def _limit(self, max_bytes: int) -> int:
        return min(self._max_frame, max_bytes) if max_bytes > 0 else self._max_frame

    def _status(self, request_id: str, job: _Job, limit: int) -> MediaStatus:
        assets = list(job.assets)
        budget = limit - STATUS_MARGIN
        for i, blob in enumerate(job.blobs):
            if len(blob) <= budget:
                assets[i] = msgspec.structs.replace(assets[i], data=blob)
                budget -= len(blob)
        return MediaStatus(
            request_id=request_id,
            job_id=job.job_id,
            kind=job.kind,
            state=job.state,
            model=job.model,
            assets=assets,
            cost_usd=job.cost_usd,
            error_code=job.error_code,
            error=job.error,
            error_param=job.error_param,
        )

    def _find(self, edge_id: str, request_id: str, job_id: str) -> _Job | Error:
        job = self._jobs.get((edge_id, job_id))
        if job is None:
            message = f"no job {job_id!r} from this edge (results are kept {self._ttl_s:.0f} s)"
            return Error(request_id, "unknown_job", message)
        return job

    def _poll(self, edge_id: str, body: MediaPoll) -> Body:
        job = self._find(edge_id, body.request_id, body.job_id)
        return (
            job if isinstance(job, Error) else self._status(body.request_id, job, self._limit(body.max_bytes))
        )

    def _fetch(self, edge_id: str, body: MediaFetch) -> Body:
        job = self._find(edge_id, body.request_id, body.job_id)
        if isinstance(job, Error):
            return job
        if job.state != "done" or not 0 <= body.asset < len(job.blobs):
            return Error(body.request_id, "invalid_request", f"job {job.job_id} has no asset {body.asset}")
        blob = job.blobs[body.asset]
        room = self._limit(body.max_bytes) - CHUNK_MARGIN
        if room <= 0 or not 0 <= body.offset < len(blob):
            message = (
                f"cannot send from offset {body.offset} of {len(blob)} bytes in {body.max_bytes}-byte frames"
            )
            return Error(body.request_id, "invalid_request", message)
        data = blob[body.offset : body.offset + room]
        return MediaChunk(body.request_id, job.job_id, body.asset, body.offset, len(blob), data)

    def _expire(self) -> None:
        """Drop results older than the TTL, and the oldest beyond four times the job limit."""
        now = time.monotonic()
        finished = sorted((j.finished, key) for key, j in self._jobs.items() if j.finished is not None)
        keep = 4 * self._max_jobs
        for i, (at, key) in enumerate(finished):
            if at < now - self._ttl_s or i < len(finished) - keep:
                del self._jobs[key]
