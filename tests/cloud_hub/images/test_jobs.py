"""Image and video jobs through the hub's real ROUTER socket (CURVE + ZAP on loopback), on the tiny
random-weight pipelines: results inline when they fit, chunked when they do not, video as a job,
and scoping by the edge's proven key."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from cloud_hub.images.diffusers_backend import DiffusersImageBackend
from cloud_hub.images.jobs import CHUNK_MARGIN, MediaJobs
from cloud_hub.images.reuse import ReusePolicy
from cloud_hub.images.service import ImageService
from cloud_hub.images.store import AssetStore
from cloud_hub.images.video_backend import WanVideoBackend
from cloud_hub.server import Hub
from shared.keys import enroll_public_key, init_keys
from shared.routing.embed import TextEmbedder
from shared.wire import Body, Error, Heartbeat, MediaChunk, MediaFetch, MediaJob, MediaPoll, MediaStatus
from tests.cloud_hub.helpers import Keys, RawClient, build_registry, make_keys
from tests.cloud_hub.images.conftest import SIDE, STEPS

MAX_FRAME = 64 * 1024
PRICE = 0.001
PROMPT = "a paper boat on a rain puddle, macro photo"


@dataclass
class Setup:
    hub: Hub
    store: AssetStore
    keys: Keys
    root: Path

    def client(self, secret: Path | None = None) -> RawClient:
        return RawClient(self.hub.endpoint, self.keys.hub_public, secret or self.keys.edge_secret_file)

    def second_edge(self) -> Path:
        public, secret = init_keys(self.root / "edge-2" / "keys")
        enroll_public_key(public, self.keys.enrolled_dir)
        self.hub.reload_enrolments()
        return secret


StartHub = Callable[..., Coroutine[Any, Any, Setup]]


@pytest.fixture
async def start(
    tmp_path: Path,
    backend: DiffusersImageBackend,
    video_backend: WanVideoBackend,
    embedder: TextEmbedder,
    policy: ReusePolicy,
) -> AsyncIterator[StartHub]:
    made: list[Setup] = []

    async def make(*, media: bool = True, max_jobs: int = 8) -> Setup:
        keys = make_keys(tmp_path / f"hub-{len(made)}")
        store = AssetStore(tmp_path / f"assets-{len(made)}.db")
        service = ImageService(backend, store, embedder, policy, video_backend=video_backend)
        jobs = MediaJobs(
            service,
            store,
            image_model=backend.name,
            video_model=video_backend.name,
            max_frame=MAX_FRAME,
            image_usd_per_step=PRICE,
            video_usd_per_step=10 * PRICE,
            max_jobs=max_jobs,
        )
        hub = Hub(
            bind="tcp://127.0.0.1:0",
            secret_key_file=keys.hub_secret_file,
            enrolled_dir=keys.enrolled_dir,
            registry=build_registry(),
            heartbeat_s=0.2,
            max_frame=MAX_FRAME,
            enrol_poll_s=0.1,
            media=jobs if media else None,
        )
        await hub.start()
        setup = Setup(hub, store, keys, tmp_path)
        made.append(setup)
        return setup

    yield make
    for setup in made:
        await setup.hub.close()
        setup.store.close()


async def _ask(client: RawClient, body: Body, timeout: float = 120.0) -> Body:
    """Send ``body`` and return the hub's answer to it (its own beats skipped)."""
    await client.send(body)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = await client.recv(timeout=end - time.monotonic())
        if got is not None and not isinstance(got, Heartbeat):
            return got
    raise AssertionError(f"no answer to {type(body).__name__}")


def _job(request_id: str, **kw: Any) -> MediaJob:
    fields: dict[str, Any] = {
        "kind": "image",
        "prompt": PROMPT,
        "deadline": time.time() + 120,
        "tenant": "t1",
        "user": "ann",
        "width": SIDE,
        "height": SIDE,
        "steps": STEPS,
        "seed": 7,
    }
    return MediaJob(request_id, **(fields | kw))


async def _fetch(client: RawClient, job_id: str, index: int, size: int, max_bytes: int) -> tuple[bytes, int]:
    parts, offset = [], 0
    while offset < size:
        chunk = await _ask(client, MediaFetch(f"f{offset}", job_id, index, offset, max_bytes))
        assert isinstance(chunk, MediaChunk) and chunk.offset == offset and chunk.total == size
        assert len(chunk.data) <= max_bytes - CHUNK_MARGIN
        parts.append(chunk.data)
        offset += len(chunk.data)
    return b"".join(parts), len(parts)


async def test_an_image_job_answers_when_done_with_the_pictures_inline(start: StartHub) -> None:
    setup = await start()
    client = setup.client()
    try:
        status = await _ask(client, _job("r1", n=2))
        assert isinstance(status, MediaStatus) and status.state == "done", status
        assert status.request_id == "r1" and len(status.assets) == 2
        assert status.model == "tiny-sd-small"
        for asset in status.assets:
            assert asset.data and hashlib.sha256(asset.data).hexdigest() == asset.sha256
            assert Image.open(io.BytesIO(asset.data)).size == (SIDE, SIDE)
            stored = setup.store.get(asset.asset_id, with_latents=False)
            assert stored is not None and stored.png == asset.data
            # scoped by the edge's proven key, not only the tenant hash it sent
            assert stored.tenant.endswith(":t1") and stored.tenant != "t1"
        first, second = status.assets
        assert first.trace.decision == "miss" and first.steps_run == STEPS
        assert second.trace.decision == "hit" and second.steps_run < STEPS  # a variation of the first
        assert status.cost_usd == pytest.approx((first.steps_run + second.steps_run) * PRICE)
    finally:
        client.close()


async def test_a_picture_bigger_than_a_frame_is_fetched_in_chunks_intact(start: StartHub) -> None:
    setup = await start()
    client = setup.client()
    try:
        status = await _ask(client, _job("big", width=256, height=256, reuse="fresh"))
        assert isinstance(status, MediaStatus) and status.state == "done"
        (asset,) = status.assets
        assert asset.size > MAX_FRAME and asset.data == b""  # too big to come inline
        data, chunks = await _fetch(client, status.job_id, 0, asset.size, MAX_FRAME)
        assert chunks >= 3
        stored = setup.store.get(asset.asset_id, with_latents=False)
        assert stored is not None
        assert hashlib.sha256(data).hexdigest() == asset.sha256 == hashlib.sha256(stored.png).hexdigest()
        # an edge that decodes smaller frames gets smaller chunks of the same bytes
        small, more = await _fetch(client, status.job_id, 0, asset.size, 16 * 1024)
        assert small == data and more > chunks
        # nothing past the end, nothing of an asset that is not there
        past = await _ask(client, MediaFetch("past", status.job_id, 0, asset.size, MAX_FRAME))
        missing = await _ask(client, MediaFetch("none", status.job_id, 3, 0, MAX_FRAME))
        assert isinstance(past, Error) and isinstance(missing, Error)
    finally:
        client.close()


async def test_a_video_job_is_queued_then_polled_then_fetched(start: StartHub) -> None:
    setup = await start()
    client = setup.client()
    try:
        queued = await _ask(client, _job("v1", kind="video", frames=5), timeout=10)
        assert isinstance(queued, MediaStatus) and queued.state in ("queued", "running")
        assert queued.assets == [] and queued.job_id
        status = await _until_done(client, queued.job_id)
        assert status.model == "tiny-wan"
        (video,) = status.assets
        assert video.content_type == "image/apng" and video.frames == 5
        data = video.data or (await _fetch(client, status.job_id, 0, video.size, MAX_FRAME))[0]
        assert hashlib.sha256(data).hexdigest() == video.sha256
        movie = Image.open(io.BytesIO(data))
        assert movie.size == (SIDE, SIDE) and getattr(movie, "n_frames", 1) == 5
        assert status.cost_usd == pytest.approx(video.steps_run * 10 * PRICE)
    finally:
        client.close()


async def test_an_edge_reaches_only_its_own_jobs_and_tenants(start: StartHub) -> None:
    setup = await start()
    mine, other = setup.client(), setup.client(setup.second_edge())
    try:
        made = await _ask(mine, _job("a1"))
        assert isinstance(made, MediaStatus) and made.state == "done"
        (asset,) = made.assets
        # the other edge sends the same tenant hash: it is still another tenant on this hub
        theirs = await _ask(other, _job("b1", reuse="exact_ok", user="eve"))
        assert isinstance(theirs, MediaStatus) and theirs.state == "done"
        assert theirs.assets[0].asset_id != asset.asset_id
        assert theirs.assets[0].trace.detail["kind"] == "fresh"
        for probe in (MediaPoll("b2", made.job_id), MediaFetch("b3", made.job_id, 0, 0, MAX_FRAME)):
            answer = await _ask(other, probe)
            assert isinstance(answer, Error) and answer.code == "unknown_job"
        # on the same edge and tenant, another user may have the picture as it is
        again = await _ask(mine, _job("a2", reuse="exact_ok", user="bob"))
        assert isinstance(again, MediaStatus) and again.assets[0].asset_id == asset.asset_id
    finally:
        mine.close()
        other.close()


async def test_assets_the_edge_handed_out_itself_are_never_handed_to_that_user_again(start: StartHub) -> None:
    setup = await start()
    client = setup.client()
    try:
        made = await _ask(client, _job("a1"))
        assert isinstance(made, MediaStatus)
        source = made.assets[0].asset_id
        # bob got `source` from the edge's own store: with that receipt, exact_ok cannot give it again
        told = await _ask(client, _job("b1", reuse="exact_ok", user="bob", received=[source]))
        assert isinstance(told, MediaStatus) and told.assets[0].asset_id != source
        # carol has no such receipt, so the same request may give her the asset itself
        untold = await _ask(client, _job("c1", reuse="exact_ok", user="carol"))
        assert isinstance(untold, MediaStatus) and untold.assets[0].asset_id == source
        # a receipt for an asset of another tenant is ignored, not recorded
        other = await _ask(client, _job("d1", tenant="t2", reuse="exact_ok", user="dan", received=[source]))
        assert isinstance(other, MediaStatus) and other.assets[0].asset_id != source
        own = setup.store.get(other.assets[0].asset_id, with_latents=False)
        assert own is not None
        assert len(setup.store.delivered_thumbs(own.tenant, "dan")) == 1  # its own picture only
    finally:
        client.close()


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"model": "dall-e-3"}, "unknown_model"),
        ({"n": 11}, "invalid_request"),
        ({"width": 30}, "invalid_request"),
        ({"reuse": "always"}, "invalid_request"),
        ({"prompt": "  "}, "invalid_request"),
    ],
)
async def test_bad_jobs_are_refused_with_a_typed_error(
    start: StartHub, change: dict[str, Any], code: str
) -> None:
    setup = await start()
    client = setup.client()
    try:
        answer = await _ask(client, _job("bad", **change), timeout=10)
        assert isinstance(answer, Error) and answer.code == code and answer.request_id == "bad"
    finally:
        client.close()


async def test_a_hub_without_images_and_a_full_hub_say_so(start: StartHub) -> None:
    plain = await start(media=False)
    client = plain.client()
    try:
        answer = await _ask(client, _job("r1"), timeout=10)
        assert isinstance(answer, Error) and answer.code == "unknown_model"
    finally:
        client.close()
    full = await start(max_jobs=1)
    client = full.client()
    try:
        queued = await _ask(client, _job("v1", kind="video", frames=5), timeout=10)
        assert isinstance(queued, MediaStatus) and queued.state in ("queued", "running")
        busy = await _ask(client, _job("r2"), timeout=10)
        assert isinstance(busy, Error) and busy.code == "overloaded" and busy.retryable
        # let the video finish: the backends are shared with the next test's hub
        await _until_done(client, queued.job_id)
    finally:
        client.close()


async def _until_done(client: RawClient, job_id: str, timeout: float = 120.0) -> MediaStatus:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        polled = await _ask(client, MediaPoll(f"p{time.monotonic()}", job_id))
        assert isinstance(polled, MediaStatus) and polled.state != "failed", polled
        if polled.state == "done":
            return polled
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job_id} never finished")
