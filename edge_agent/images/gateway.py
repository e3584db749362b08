"""``ImageGateway``: the edge's image and video path, cheapest first.

1. ``reuse="exact_ok"``: assets of the same request of this tenant that this user never
   received, from the edge's own store (``EdgeAssetStore``): no hub, no denoising step;
2. the rest of ``n`` (or everything, for ``variation`` and ``fresh``) as one job over the hub
   link, where the hub's reuse policy runs (variation from a cached latent, recomposition, fresh).
   What comes back is stored here for step 1 of later requests.

No diffusion runs on the edge. A request that needs the hub while the hub is unreachable fails
with ``MediaUnavailable`` (the API's 503 with ``Retry-After``), never with a stand-in picture.

Cost is the hub's: denoising steps run × its configured per-step price; an answer from the
edge's store costs nothing. Each request gives one telemetry event (operation
``image_generation`` or ``video_generation``) with route, cost and steps; a video's is written
when the edge sees the job end (the poll that finds it completed or failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import msgspec

from edge_agent.hub_link.errors import HubError, HubLinkError, HubRefused
from edge_agent.hub_link.media import Fetched, MediaClient, MediaLink
from edge_agent.images.store import EdgeAssetStore, MediaKind, StoredAsset, VideoJob, request_key
from edge_agent.tenancy import RequestContext
from shared.images import ReuseMode
from shared.taxonomy import Route
from shared.telemetry import TelemetryEvent
from shared.wire import MediaJob, MediaStatus, Scalar, TraceStep

RETRY_AFTER_S = 5
Recorder = Callable[[TelemetryEvent], object]


class MediaUnavailable(Exception):
    """The hub is needed and cannot be had now (unreachable, overloaded, failed): retry later."""

    def __init__(self, message: str, retry_after_s: int = RETRY_AFTER_S) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class MediaNotFound(LookupError):
    """No such asset or video job for this tenant."""


class MediaNotReady(Exception):
    """A video's content was asked for before the job completed."""


@dataclass(frozen=True)
class MediaAsk:
    """A validated request; ``user`` is the body's end-user id as sent (hashed before use)."""

    prompt: str
    width: int
    height: int
    n: int = 1
    frames: int = 1
    steps: int = 0
    seed: int | None = None
    negative_prompt: str = ""
    reuse: ReuseMode = "variation"
    model: str = ""  # the hub model named; "" for the hub's default
    request_model: str = ""  # what the client sent, for telemetry
    user: str = ""


@dataclass(frozen=True)
class Item:
    asset_id: str
    data: bytes
    content_type: str
    width: int
    height: int
    seed: int
    steps_total: int
    steps_run: int
    trace: TraceStep

    @property
    def reused(self) -> bool:
        return self.trace.decision == "hit"


@dataclass(frozen=True)
class MediaAnswer:
    kind: MediaKind
    items: list[Item]
    model: str
    cost_usd: float
    trace: tuple[TraceStep, ...] = field(default=())

    @property
    def route(self) -> Route:
        """``asset_reuse`` as soon as anything was reused, else the hub's generation."""
        return Route.ASSET_REUSE if any(i.reused for i in self.items) else Route.HUB_OSS

    def edgeroute_field(self) -> dict[str, Any]:
        total = sum(i.steps_total for i in self.items)
        run = sum(i.steps_run for i in self.items)
        return {
            "route": self.route.value,
            "modality": self.kind,
            "model": self.model,
            "cost_usd": self.cost_usd,
            "steps_total": total,
            "steps_run": run,
            "steps_skipped": total - run,
            "assets": [_summary(i) for i in self.items],
            "trace": [_step_dict(s) for s in self.trace],
        }


def _summary(item: Item) -> dict[str, Any]:
    d = item.trace.detail
    return {
        "asset_id": item.asset_id,
        "reused": item.reused,
        "kind": d.get("kind", ""),
        "where": d.get("where", ""),
        "source_asset_id": d.get("source_asset_id") or None,
        "similarity": d.get("similarity"),
        "distance": d.get("distance"),
        "steps_total": item.steps_total,
        "steps_run": item.steps_run,
        "steps_skipped": item.steps_total - item.steps_run,
        "chunks": d.get("chunks", 0),
    }


def _step_dict(step: TraceStep) -> dict[str, Any]:
    return {
        "stage": step.stage,
        "decision": step.decision,
        "reason": step.reason,
        "elapsed_ms": step.elapsed_ms,
        "detail": dict(step.detail),
    }


@contextlib.contextmanager
def _hub_errors() -> Iterator[None]:
    """Refusals stay (the client's request is wrong); every other link failure means retry later."""
    try:
        yield
    except HubRefused:
        raise
    except HubLinkError as exc:
        raise MediaUnavailable(f"the hub could not serve this now: {exc}") from exc


class ImageGateway:
    def __init__(
        self,
        store: EdgeAssetStore,
        link: MediaLink | None,
        *,
        timeout_s: float,
        record: Recorder | None = None,
    ) -> None:
        self.store = store
        self._link = link
        self._timeout_s = timeout_s
        self._record_event = record
        self._polls: dict[str, asyncio.Lock] = {}

    def _client(self) -> MediaClient:
        if self._link is None:
            raise MediaUnavailable("this agent has no hub, and images are generated on the hub", 60)
        if not self._link.connected:
            raise MediaUnavailable("the hub is not reachable")
        return MediaClient(self._link, self._timeout_s)

    # --- images -------------------------------------------------------------------------------

    async def images(self, ctx: RequestContext, ask: MediaAsk) -> MediaAnswer:
        began = time.perf_counter()
        user = ctx.user_hash(ask.user)
        key = request_key(ask.prompt, ask.negative_prompt, ask.model)
        local: list[StoredAsset] = []
        if ask.reuse == "exact_ok":
            local = self.store.claim_exact(ctx.tenant, user, key, "image", (ask.width, ask.height, 1), ask.n)
        items = [_local_item(a) for a in local]
        model, cost = (local[0].model if local else ""), 0.0
        try:
            if len(local) < ask.n:
                client = self._client()
                status = await self._submit(client, ctx, ask, "image", ask.n - len(local), user, len(local))
                with _hub_errors():
                    fetched = await client.fetch(status)
                self._keep(ctx.tenant, user, key, "image", status.model, fetched)
                model, cost = status.model, status.cost_usd
                items += [_hub_item(f) for f in fetched]
        except BaseException as exc:
            self.store.release(ctx.tenant, user, [a.id for a in local])
            self._record(ctx.request_id, ctx, ask, "image", None, time.perf_counter() - began, exc)
            raise
        answer = MediaAnswer(
            "image", items, model, cost, (_store_step(ask, len(local)), *(i.trace for i in items))
        )
        self._record(ctx.request_id, ctx, ask, "image", answer, time.perf_counter() - began)
        return answer

    async def _submit(
        self,
        client: MediaClient,
        ctx: RequestContext,
        ask: MediaAsk,
        kind: MediaKind,
        n: int,
        user: str,
        offset: int,
    ) -> MediaStatus:
        received = self.store.unreported(ctx.tenant, user)
        job = MediaJob(
            request_id=f"{kind}-{uuid.uuid4().hex}",
            kind=kind,
            prompt=ask.prompt,
            deadline=time.time() + self._timeout_s,
            tenant=ctx.tenant_hash,
            user=user,
            n=n,
            frames=ask.frames,
            width=ask.width,
            height=ask.height,
            steps=ask.steps,
            # image i of the request keeps seed + i whichever store it came from
            seed=None if ask.seed is None else ask.seed + offset,
            negative_prompt=ask.negative_prompt,
            reuse=ask.reuse,
            model=ask.model,
            max_bytes=client.link.max_frame,
            received=received,
        )
        with _hub_errors():
            status = await client.submit(job)
        self.store.mark_reported(ctx.tenant, user, received)
        return status

    def _keep(
        self, tenant: str, user: str, key: str, kind: MediaKind, model: str, fetched: list[Fetched]
    ) -> None:
        for f in fetched:
            m = f.meta
            asset = StoredAsset(
                m.asset_id,
                kind,
                m.width,
                m.height,
                m.frames,
                m.content_type,
                f.data,
                m.sha256,
                m.seed,
                m.steps_total,
                model,
            )
            self.store.put(tenant, key, asset)
        self.store.deliver(tenant, user, [f.meta.asset_id for f in fetched], reported=True)

    # --- video --------------------------------------------------------------------------------

    async def submit_video(self, ctx: RequestContext, ask: MediaAsk) -> VideoJob:
        began = time.perf_counter()
        user = ctx.user_hash(ask.user)
        key = request_key(ask.prompt, ask.negative_prompt, ask.model)
        now = time.time()
        job_id = f"video_{uuid.uuid4().hex}"
        common: dict[str, Any] = {
            "id": job_id,
            "tenant": ctx.tenant,
            "user": user,
            "prompt": ask.prompt,
            "width": ask.width,
            "height": ask.height,
            "frames": ask.frames,
            "reuse": ask.reuse,
            "request_key": key,
            "created": now,
        }
        if ask.reuse == "exact_ok":
            size = (ask.width, ask.height, ask.frames)
            local = self.store.claim_exact(ctx.tenant, user, key, "video", size, 1)
            if local:
                item = _local_item(local[0])
                answer = MediaAnswer("video", [item], local[0].model, 0.0, (_store_step(ask, 1), item.trace))
                job = VideoJob(
                    **common,
                    hub_job_id="",
                    model=answer.model,
                    status="completed",
                    asset_id=item.asset_id,
                    completed=now,
                    edgeroute=answer.edgeroute_field(),
                )
                self.store.add_video(job)
                self._record(job_id, ctx, ask, "video", answer, time.perf_counter() - began)
                return job
        try:
            status = await self._submit(self._client(), ctx, ask, "video", 1, user, 0)
        except BaseException as exc:
            self._record(job_id, ctx, ask, "video", None, time.perf_counter() - began, exc)
            raise
        job = VideoJob(**common, hub_job_id=status.job_id, model=status.model, status="queued")
        self.store.add_video(job)
        return job

    async def video(self, ctx: RequestContext, job_id: str) -> VideoJob:
        """The job as the hub sees it now; a done one is fetched and kept here first."""
        job = self._video(ctx, job_id)
        if job.status in ("completed", "failed"):
            return job
        lock = self._polls.setdefault(job_id, asyncio.Lock())
        async with lock:  # two polls at once must not fetch, store and count one video twice
            job = self._video(ctx, job_id)
            if job.status not in ("completed", "failed"):
                await self._advance(ctx, job)
                job = self._video(ctx, job_id)
        if job.status in ("completed", "failed"):
            self._polls.pop(job_id, None)
        return job

    async def _advance(self, ctx: RequestContext, job: VideoJob) -> None:
        client = self._client()
        reuse = cast(ReuseMode, job.reuse)
        ask = MediaAsk(job.prompt, job.width, job.height, frames=job.frames, reuse=reuse)
        try:
            with _hub_errors():
                status = await client.poll(job.hub_job_id)
        except MediaUnavailable as exc:
            cause = exc.__cause__
            if not (isinstance(cause, HubError) and cause.code == "unknown_job"):
                raise
            # the hub restarted or dropped the result: the job will never complete
            self.store.update_video(
                job.id, "failed", error_code="job_lost", error="the hub no longer has this job"
            )
            self._record(job.id, ctx, ask, "video", None, time.time() - job.created, exc, job.user)
            return
        if status.state in ("queued", "running"):
            self.store.update_video(job.id, "queued" if status.state == "queued" else "in_progress")
            return
        if status.state == "failed":
            code = status.error_code or "backend_error"
            self.store.update_video(job.id, "failed", error_code=code, error=status.error)
            self._record(
                job.id, ctx, ask, "video", None, time.time() - job.created, RuntimeError(code), job.user
            )
            return
        with _hub_errors():
            fetched = await client.fetch(status)
        self._keep(ctx.tenant, job.user, job.request_key, "video", status.model, fetched)
        items = [_hub_item(f) for f in fetched]
        answer = MediaAnswer(
            "video", items, status.model, status.cost_usd, (_store_step(ask, 0), *(i.trace for i in items))
        )
        self.store.update_video(
            job.id,
            "completed",
            model=status.model,
            asset_id=items[0].asset_id,
            edgeroute=answer.edgeroute_field(),
        )
        self._record(job.id, ctx, ask, "video", answer, time.time() - job.created, None, job.user)

    def _video(self, ctx: RequestContext, job_id: str) -> VideoJob:
        job = self.store.video(ctx.tenant, job_id)
        if job is None:
            raise MediaNotFound(f"No video job with id '{job_id}' found.")
        return job

    def video_content(self, ctx: RequestContext, job_id: str) -> StoredAsset:
        job = self._video(ctx, job_id)
        if job.status != "completed":
            raise MediaNotReady(f"Video '{job_id}' is {job.status}; its content exists once it is completed.")
        return self.asset(ctx, job.asset_id)

    def asset(self, ctx: RequestContext, asset_id: str) -> StoredAsset:
        found = self.store.get(ctx.tenant, asset_id)
        if found is None:
            raise MediaNotFound(f"No asset with id '{asset_id}' found.")
        return found

    # --- telemetry ----------------------------------------------------------------------------

    def _record(
        self,
        response_id: str,
        ctx: RequestContext,
        ask: MediaAsk,
        kind: MediaKind,
        answer: MediaAnswer | None,
        latency_s: float,
        error: BaseException | None = None,
        user: str | None = None,
    ) -> None:
        if self._record_event is None:
            return
        extra: dict[str, Scalar] = {"edgeroute.media.reuse": ask.reuse}
        if answer is not None:
            summary = answer.edgeroute_field()
            extra |= {
                "edgeroute.media.count": len(answer.items),
                "edgeroute.media.reused": sum(1 for i in answer.items if i.reused),
                "edgeroute.media.steps_total": summary["steps_total"],
                "edgeroute.media.steps_run": summary["steps_run"],
            }
        event = TelemetryEvent(
            response_id=response_id,
            tenant=ctx.tenant_hash,
            user=ctx.user_hash(ask.user) if user is None else user,
            operation=f"{kind}_generation",
            modality=kind,
            route=answer.route.value if answer is not None else "",
            request_model=ask.request_model,
            response_model=answer.model if answer is not None else "",
            latency_s=latency_s,
            cost_usd=answer.cost_usd if answer is not None else 0.0,
            error_type=type(error).__name__ if error is not None else "",
            extra=extra,
        )
        self._record_event(event)

    def close(self) -> None:
        self.store.close()


def _store_step(ask: MediaAsk, local: int) -> TraceStep:
    """The edge store's hop: how much of the request it answered (only ``exact_ok`` may)."""
    wanted = ask.n if ask.frames == 1 else 1
    decision: Literal["hit", "partial", "miss", "skip"]
    if ask.reuse != "exact_ok":
        decision = "skip"
    else:
        decision = "hit" if local >= wanted else "partial" if local else "miss"
    return TraceStep(
        stage="asset_store", decision=decision, reason=ask.reuse, detail={"local": local, "wanted": wanted}
    )


def _local_item(a: StoredAsset) -> Item:
    trace = TraceStep(
        stage="asset_reuse",
        decision="hit",
        reason="exact",
        detail={
            "where": "edge",
            "kind": "exact",
            "source_asset_id": a.id,
            "similarity": 1.0,
            "steps_total": a.steps_total,
            "steps_run": 0,
            "steps_skipped": a.steps_total,
        },
    )
    return Item(a.id, a.data, a.content_type, a.width, a.height, a.seed, a.steps_total, 0, trace)


def _hub_item(f: Fetched) -> Item:
    m = f.meta
    trace = msgspec.structs.replace(m.trace, detail={**m.trace.detail, "where": "hub", "chunks": f.chunks})
    return Item(
        m.asset_id, f.data, m.content_type, m.width, m.height, m.seed, m.steps_total, m.steps_run, trace
    )
