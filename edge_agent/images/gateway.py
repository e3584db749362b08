"""``ImageGateway``: the edge's image and video path, cheapest first.

1. ``reuse="exact_ok"``: assets of the same request of this tenant that this user never
   received, from the edge's own store (``EdgeAssetStore``): no hub, no denoising step, no cost;
2. the rest of ``n`` (or everything, for ``variation`` and ``fresh``) as one job over the hub
   link, where the hub's reuse policy runs (variation from a cached latent, recomposition, fresh).
   What comes back is stored here for step 1 of later requests.

No diffusion runs on the edge. A request that needs the hub while the hub is unreachable fails
with ``MediaUnavailable`` (the API's 503 with ``Retry-After``), never with a stand-in picture.

Every hub job is metered (``edge_agent.images.metering``): it holds a place at the media gate
and reserves its maximum cost on the tenant's budget before it is sent, refused with
``Overloaded`` or ``BudgetExceeded`` otherwise, and settles at the hub's cost when it ends. Cost
is the hub's: denoising steps run × its configured per-step price. Each request gives one
telemetry event (operation ``image_generation`` or ``video_generation``) with route, cost and
steps; a video's is written when the edge sees the job end. Video jobs live in
``edge_agent.images.video``.
"""

from __future__ import annotations

import time

from edge_agent.hub_link.media import MediaLink
from edge_agent.images.answer import (
    MediaAnswer,
    MediaAsk,
    MediaNotFound,
    MediaNotReady,
    MediaUnavailable,
    hub_errors,
    hub_item,
    local_item,
    store_step,
)
from edge_agent.images.hub import MediaHub, Recorder
from edge_agent.images.metering import MediaMeter
from edge_agent.images.store import EdgeAssetStore, StoredAsset, VideoJob, request_key
from edge_agent.images.video import VideoJobs
from edge_agent.tenancy import RequestContext

__all__ = [
    "ImageGateway",
    "MediaAnswer",
    "MediaAsk",
    "MediaNotFound",
    "MediaNotReady",
    "MediaUnavailable",
    "Recorder",
]


class ImageGateway:
    """The image and video routes' one part; it has a lifetime (its video watchers, its store)."""

    def __init__(
        self,
        store: EdgeAssetStore,
        link: MediaLink | None,
        *,
        timeout_s: float,
        record: Recorder | None = None,
    ) -> None:
        self.store = store
        self._hub = MediaHub(store, link, timeout_s=timeout_s, record=record)
        self._videos = VideoJobs(self._hub)

    def use_meter(self, meter: MediaMeter) -> None:
        """Meter every hub job from now on (the app installs one over its budgets and gates)."""
        self._hub.meter = meter

    async def images(self, ctx: RequestContext, ask: MediaAsk) -> MediaAnswer:
        hub = self._hub
        began = time.perf_counter()
        user = ctx.user_hash(ask.user)
        key = request_key(ask.prompt, ask.negative_prompt, ask.model)
        local: list[StoredAsset] = []
        if ask.reuse == "exact_ok":
            local = self.store.claim_exact(ctx.tenant, user, key, "image", (ask.width, ask.height, 1), ask.n)
        items = [local_item(a) for a in local]
        model, cost = (local[0].model if local else ""), 0.0
        try:
            if len(local) < ask.n:
                client = hub.client()
                wanted = ask.n - len(local)
                charge = await hub.meter.take(ctx.tenant, "image", ask.steps, wanted)
                try:
                    status = await hub.submit(client, ctx, ask, "image", wanted, user, len(local))
                except BaseException as exc:
                    await charge.fail(exc)
                    raise
                # the hub has done the work and said what it cost, whatever happens to the fetch
                await charge.settle(status.cost_usd)
                with hub_errors():
                    fetched = await client.fetch(status)
                hub.keep(ctx.tenant, user, key, "image", status.model, fetched)
                model, cost = status.model, status.cost_usd
                items += [hub_item(f) for f in fetched]
        except BaseException as exc:
            self.store.release(ctx.tenant, user, [a.id for a in local])
            hub.record(ctx.request_id, ctx, ask, "image", None, time.perf_counter() - began, exc)
            raise
        answer = MediaAnswer(
            "image", items, model, cost, (store_step(ask, len(local)), *(i.trace for i in items))
        )
        hub.record(ctx.request_id, ctx, ask, "image", answer, time.perf_counter() - began)
        return answer

    async def submit_video(self, ctx: RequestContext, ask: MediaAsk) -> VideoJob:
        return await self._videos.submit(ctx, ask)

    async def video(self, ctx: RequestContext, job_id: str) -> VideoJob:
        return await self._videos.video(ctx, job_id)

    def video_content(self, ctx: RequestContext, job_id: str) -> StoredAsset:
        return self._videos.content(ctx, job_id)

    def asset(self, ctx: RequestContext, asset_id: str) -> StoredAsset:
        found = self.store.get(ctx.tenant, asset_id)
        if found is None:
            raise MediaNotFound(f"No asset with id '{asset_id}' found.")
        return found

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self._videos.aclose()
        self.store.close()
