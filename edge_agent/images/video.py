"""Video jobs: submitted to the hub at once, then followed until the hub says they ended.

``submit`` answers with the job queued; a poll (``video``) asks the hub for its state and, once
it is done, fetches the video into the edge's store and writes the request's telemetry event.
An ``exact_ok`` request the edge's store can answer completes at once, without the hub.

A job on the hub holds its place at the media gate and its budget reservation while it runs, so
it is followed here too, not only when a client polls: a watcher polls the hub with a growing
interval until the job ends (then settles the reservation at the hub's cost and frees the place)
or until ``MediaMeter.video_hold_s`` has passed (then it charges the whole reservation). A job
nobody polls still ends, is stored and leaves its event. Polls of one job, the client's and the
watcher's, go one at a time, so nothing is fetched, stored or counted twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, cast

from edge_agent.hub_link.errors import HubError
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
from edge_agent.images.hub import MediaHub
from edge_agent.images.metering import Charge
from edge_agent.images.store import StoredAsset, VideoJob, request_key
from edge_agent.tenancy import RequestContext
from shared.images import ReuseMode

log = logging.getLogger(__name__)

FIRST_POLL_S = 0.25
MAX_POLL_S = 5.0
_ENDED = ("completed", "failed")


class VideoJobs:
    def __init__(self, hub: MediaHub) -> None:
        self._hub = hub
        self._polls: dict[str, asyncio.Lock] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    async def submit(self, ctx: RequestContext, ask: MediaAsk) -> VideoJob:
        hub, store = self._hub, self._hub.store
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
            local = store.claim_exact(ctx.tenant, user, key, "video", size, 1)
            if local:
                item = local_item(local[0])
                answer = MediaAnswer("video", [item], local[0].model, 0.0, (store_step(ask, 1), item.trace))
                job = VideoJob(
                    **common,
                    hub_job_id="",
                    model=answer.model,
                    status="completed",
                    asset_id=item.asset_id,
                    completed=now,
                    edgeroute=answer.edgeroute_field(),
                )
                store.add_video(job)
                hub.record(job_id, ctx, ask, "video", answer, time.perf_counter() - began)
                return job
        try:
            client = hub.client()
            charge = await hub.meter.take(ctx.tenant, "video", ask.steps, 1)
        except BaseException as exc:
            hub.record(job_id, ctx, ask, "video", None, time.perf_counter() - began, exc)
            raise
        try:
            status = await hub.submit(client, ctx, ask, "video", 1, user, 0)
            job = VideoJob(**common, hub_job_id=status.job_id, model=status.model, status="queued")
            store.add_video(job)
        except BaseException as exc:
            await charge.fail(exc)
            hub.record(job_id, ctx, ask, "video", None, time.perf_counter() - began, exc)
            raise
        watcher = asyncio.create_task(self._watch(ctx, job_id, charge), name=f"watch-{job_id}")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return job

    async def video(self, ctx: RequestContext, job_id: str) -> VideoJob:
        """The job as the hub sees it now; a done one is fetched and kept here first."""
        job = self._video(ctx, job_id)
        if job.status in _ENDED:
            return job
        lock = self._polls.setdefault(job_id, asyncio.Lock())
        async with lock:  # two polls at once must not fetch, store and count one video twice
            job = self._video(ctx, job_id)
            if job.status not in _ENDED:
                await self._advance(ctx, job)
                job = self._video(ctx, job_id)
        if job.status in _ENDED:
            self._polls.pop(job_id, None)
        return job

    async def _advance(self, ctx: RequestContext, job: VideoJob) -> None:
        hub, store = self._hub, self._hub.store
        client = hub.client()
        reuse = cast(ReuseMode, job.reuse)
        ask = MediaAsk(job.prompt, job.width, job.height, frames=job.frames, reuse=reuse)
        try:
            with hub_errors():
                status = await client.poll(job.hub_job_id)
        except MediaUnavailable as exc:
            cause = exc.__cause__
            if not (isinstance(cause, HubError) and cause.code == "unknown_job"):
                raise
            # the hub restarted or dropped the result: the job will never complete
            store.update_video(
                job.id, "failed", error_code="job_lost", error="the hub no longer has this job"
            )
            hub.record(job.id, ctx, ask, "video", None, time.time() - job.created, exc, job.user)
            return
        if status.state in ("queued", "running"):
            store.update_video(job.id, "queued" if status.state == "queued" else "in_progress")
            return
        if status.state == "failed":
            code = status.error_code or "backend_error"
            store.update_video(job.id, "failed", error_code=code, error=status.error)
            hub.record(
                job.id, ctx, ask, "video", None, time.time() - job.created, RuntimeError(code), job.user
            )
            return
        with hub_errors():
            fetched = await client.fetch(status)
        hub.keep(ctx.tenant, job.user, job.request_key, "video", status.model, fetched)
        items = [hub_item(f) for f in fetched]
        answer = MediaAnswer(
            "video", items, status.model, status.cost_usd, (store_step(ask, 0), *(i.trace for i in items))
        )
        store.update_video(
            job.id,
            "completed",
            model=status.model,
            asset_id=items[0].asset_id,
            edgeroute=answer.edgeroute_field(),
        )
        hub.record(job.id, ctx, ask, "video", answer, time.time() - job.created, None, job.user)

    async def _watch(self, ctx: RequestContext, job_id: str, charge: Charge) -> None:
        """Follow a submitted job until it ends; settle its charge then (see the module doc)."""
        deadline = time.monotonic() + self._hub.meter.video_hold_s
        delay = FIRST_POLL_S
        cost = charge.amount_usd  # unless the hub says what it cost
        try:
            while (left := deadline - time.monotonic()) > 0:
                await asyncio.sleep(min(delay, left))
                delay = min(MAX_POLL_S, delay * 1.5)
                try:
                    job = await self.video(ctx, job_id)
                except MediaUnavailable:
                    continue  # the hub is away for now; the job may still end there
                if job.status in _ENDED:
                    cost = _cost(job, charge.amount_usd)
                    break
        except Exception:
            log.exception("following video job %s failed", job_id)
        finally:
            await charge.settle(cost)

    def _video(self, ctx: RequestContext, job_id: str) -> VideoJob:
        job = self._hub.store.video(ctx.tenant, job_id)
        if job is None:
            raise MediaNotFound(f"No video job with id '{job_id}' found.")
        return job

    def content(self, ctx: RequestContext, job_id: str) -> StoredAsset:
        job = self._video(ctx, job_id)
        if job.status != "completed":
            raise MediaNotReady(f"Video '{job_id}' is {job.status}; its content exists once it is completed.")
        found = self._hub.store.get(ctx.tenant, job.asset_id)
        if found is None:
            raise MediaNotFound(f"No asset with id '{job.asset_id}' found.")
        return found

    async def aclose(self) -> None:
        """Stop following jobs; each one still running is charged its whole reservation."""
        watchers = list(self._watchers)
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)


def _cost(job: VideoJob, reserved: float) -> float:
    """What an ended job costs: the hub's figure for a completed one, nothing for one the hub
    failed, the reservation for one it lost (it may have run before the hub went away)."""
    if job.status == "completed":
        return float((job.edgeroute or {}).get("cost_usd", reserved))
    return reserved if job.error_code == "job_lost" else 0.0
