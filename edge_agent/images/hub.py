"""``MediaHub``: what the image and the video path share on the way to the hub and back.

It opens a ``MediaClient`` on the link (or says why the hub cannot be had), submits a job with
the receipts of what this user got from the edge's own store, keeps what comes back in that
store for ``exact_ok`` requests later, and writes each request's telemetry event. Every hub job
goes through ``meter`` (``edge_agent.images.metering``) first: the app installs one over its
budgets and admission gates; without it nothing is metered.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from edge_agent.hub_link.media import Fetched, MediaClient, MediaLink
from edge_agent.images.answer import MediaAnswer, MediaAsk, MediaUnavailable, hub_errors, media_event
from edge_agent.images.metering import MediaMeter, MediaPrices
from edge_agent.images.store import EdgeAssetStore, MediaKind, StoredAsset
from edge_agent.tenancy import RequestContext
from shared.telemetry import TelemetryEvent
from shared.wire import MediaJob, MediaStatus

Recorder = Callable[[TelemetryEvent], object]


class MediaHub:
    def __init__(
        self,
        store: EdgeAssetStore,
        link: MediaLink | None,
        *,
        timeout_s: float,
        record: Recorder | None = None,
    ) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self.meter = MediaMeter(MediaPrices())
        self._link = link
        self._record_event = record

    def client(self) -> MediaClient:
        if self._link is None:
            raise MediaUnavailable("this agent has no hub, and images are generated on the hub", 60)
        if not self._link.connected:
            raise MediaUnavailable("the hub is not reachable")
        return MediaClient(self._link, self.timeout_s)

    async def submit(
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
            deadline=time.time() + self.timeout_s,
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
        with hub_errors():
            status = await client.submit(job)
        self.store.mark_reported(ctx.tenant, user, received)
        return status

    def keep(
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

    def record(
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
        if self._record_event is not None:
            self._record_event(media_event(response_id, ctx, ask, kind, answer, latency_s, error, user))
