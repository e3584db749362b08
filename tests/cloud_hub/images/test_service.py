from __future__ import annotations

import asyncio
import io
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from cloud_hub.images.features import ThumbnailDistance
from cloud_hub.images.service import ImageService
from shared.images import ImageRequest, ImageRequestError, ReuseMode, VideoRequest, trace_step
from tests.cloud_hub.images.conftest import SIDE, STEPS

PROMPT = "a red fox sitting in fresh snow, golden hour"

Factory = Callable[[], ImageService]


def _req(
    reuse: ReuseMode = "variation", *, tenant: str = "acme", user: str = "ann", n: int = 1, seed: int = 1
) -> ImageRequest:
    return ImageRequest(
        PROMPT, tenant, user, n=n, width=SIDE, height=SIDE, steps=STEPS, seed=seed, reuse=reuse
    )


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


async def test_same_prompt_twice_gives_two_different_images_the_second_cheaper(make_service: Factory) -> None:
    svc = make_service()
    first = (await svc.generate(_req(seed=1))).images[0]
    second = (await svc.generate(_req(seed=2))).images[0]
    assert first.trace.kind == "fresh" and first.trace.steps_run == STEPS
    assert second.trace.route == "asset_reuse" and second.trace.kind == "variation"
    assert second.trace.source_asset_id == first.asset_id
    assert second.trace.steps_run < first.trace.steps_run
    assert second.trace.steps_skipped > 0
    assert second.asset_id != first.asset_id
    assert not np.array_equal(_pixels(first.png), _pixels(second.png))
    dist = ThumbnailDistance()
    measured = dist.distance(dist.thumb(_pixels(first.png)), dist.thumb(_pixels(second.png)))
    assert second.trace.distance is not None
    assert measured >= svc.policy.threshold
    assert measured == pytest.approx(second.trace.distance, abs=5e-3)  # the PNG round trip


def test_a_grid_reuses_its_first_image_and_every_return_clears_the_threshold(make_service: Factory) -> None:
    svc = make_service()
    images = svc.generate_sync(_req(n=4)).images
    assert images[0].trace.kind == "fresh"
    assert all(img.trace.kind == "variation" for img in images[1:])
    assert len({img.asset_id for img in images}) == 4
    dist = ThumbnailDistance()
    thumbs = [dist.thumb(_pixels(img.png)) for img in images]
    closest = min(dist.distance(a, b) for i, a in enumerate(thumbs) for b in thumbs[i + 1 :])
    assert closest >= svc.policy.threshold - 5e-3
    assert sum(img.trace.steps_run for img in images) < 4 * STEPS


def test_fresh_never_reuses(make_service: Factory) -> None:
    svc = make_service()
    svc.generate_sync(_req(n=2))
    again = svc.generate_sync(_req("fresh", n=3, seed=5)).images
    assert all(img.trace.route == "fresh" and img.trace.steps_run == STEPS for img in again)
    assert all(img.trace.source_asset_id == "" for img in again)


def test_exact_ok_may_return_a_cached_asset_but_never_twice_to_one_user(make_service: Factory) -> None:
    svc = make_service()
    original = svc.generate_sync(_req(user="ann")).images[0]
    got = svc.generate_sync(_req("exact_ok", user="bob")).images[0]
    assert got.trace.kind == "exact" and got.trace.steps_run == 0
    assert got.asset_id == original.asset_id and got.png == original.png
    # bob has it now: the next exact_ok request from bob must not hand it over again
    later = svc.generate_sync(_req("exact_ok", user="bob", seed=9)).images[0]
    assert later.asset_id != original.asset_id
    # and ann, who received it fresh, never gets it back as an exact reuse either
    ann = svc.generate_sync(_req("exact_ok", user="ann", seed=11)).images[0]
    assert ann.asset_id != original.asset_id


def test_a_user_never_receives_an_asset_twice_without_exact_ok(make_service: Factory) -> None:
    svc = make_service()
    seen: list[str] = []
    for seed in range(3):
        seen += [img.asset_id for img in svc.generate_sync(_req(n=2, seed=seed)).images]
    assert len(seen) == len(set(seen)) == 6


def test_the_same_seed_asked_twice_still_returns_a_different_picture(make_service: Factory) -> None:
    svc = make_service()
    a = svc.generate_sync(_req("fresh", seed=3)).images[0]
    b = svc.generate_sync(_req("fresh", seed=3)).images[0]
    assert b.seed != a.seed and b.trace.escalations == 1  # reseeded: same seed, same picture otherwise
    assert b.trace.distance is not None and b.trace.distance >= svc.policy.threshold


def test_tenant_b_never_gets_tenant_a_assets(make_service: Factory) -> None:
    svc = make_service()
    a_ids = {img.asset_id for img in svc.generate_sync(_req(tenant="a", n=2)).images}
    # the same user name and prompt under tenant b: nothing of a's may serve
    for mode in ("exact_ok", "variation"):
        got = svc.generate_sync(_req(mode, tenant="b", user=f"ann-{mode}", seed=7)).images[0]
        assert got.trace.source_asset_id not in a_ids and got.asset_id not in a_ids
    b_first = svc.generate_sync(_req("exact_ok", tenant="c", user="zed", seed=8)).images[0]
    assert b_first.trace.kind == "fresh"  # tenant c has nothing cached yet, however much a has


@pytest.mark.parametrize(
    ("change", "param"),
    [({"n": 50}, "n"), ({"width": 100}, "size"), ({"height": 4096}, "size"), ({"prompt": "  "}, "prompt")],
)
async def test_bad_requests_are_refused_before_any_work(
    make_service: Factory, change: dict[str, object], param: str
) -> None:
    fields = {"prompt": PROMPT, "tenant": "t", "user": "u", "width": SIDE, "height": SIDE} | change
    with pytest.raises(ImageRequestError) as err:
        await make_service().generate(ImageRequest(**fields))  # type: ignore[arg-type]
    assert err.value.param == param


def test_the_trace_becomes_a_route_trace_step(make_service: Factory) -> None:
    svc = make_service()
    svc.generate_sync(_req())
    img = svc.generate_sync(_req(seed=4)).images[0]
    step = trace_step(img.trace)
    assert step.stage == "asset_reuse" and step.decision == "hit" and step.reason == "variation"
    assert step.detail["source_asset_id"] == img.trace.source_asset_id
    assert step.detail["steps_skipped"] == img.trace.steps_skipped > 0


def test_video_variation(make_service: Factory) -> None:
    svc = make_service()

    def video(prompt: str, seed: int) -> VideoRequest:
        return VideoRequest(prompt, "acme", "ann", frames=5, width=SIDE, height=SIDE, steps=STEPS, seed=seed)

    first = svc.generate_video_sync(video("a dog running along a beach at sunset", 1)).video
    second = svc.generate_video_sync(video("a dog running along a beach at sunset", 2)).video
    assert len(first.frames_png) == len(second.frames_png) == 5
    assert first.trace.kind == "fresh" and second.trace.kind == "variation"
    assert second.trace.steps_run < first.trace.steps_run
    assert second.frames_png != first.frames_png


async def test_concurrent_requests_share_one_backend_safely(make_service: Factory) -> None:
    svc = make_service()
    results = await asyncio.gather(svc.generate(_req(n=2, seed=1)), svc.generate(_req(n=2, seed=50)))
    ids = [img.asset_id for r in results for img in r.images]
    assert len(set(ids)) == 4
    assert sum(img.trace.route == "fresh" for r in results for img in r.images) >= 1
