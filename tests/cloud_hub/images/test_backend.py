from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cloud_hub.images.base import ImageBackend, RenderSpec
from cloud_hub.images.cascade import SplitPolicy
from cloud_hub.images.diffusers_backend import DiffusersImageBackend
from cloud_hub.images.reuse import ReusePolicy, pick_latent
from cloud_hub.images.video_backend import WanVideoBackend
from tests.cloud_hub.images.conftest import SIDE, STEPS

SPEC = RenderSpec(
    "a castle on a hill under a stormy sky", SIDE, SIDE, STEPS, seed=5, harvest=(2, 4, 6, STEPS)
)


def test_backends_implement_the_protocol(
    backend: DiffusersImageBackend, video_backend: WanVideoBackend
) -> None:
    assert isinstance(backend, ImageBackend) and isinstance(video_backend, ImageBackend)
    assert backend.latent_space != video_backend.latent_space


def test_fresh_harvests_latents_at_the_requested_steps(backend: DiffusersImageBackend) -> None:
    r = backend.fresh(SPEC)
    assert r.pixels.shape == (SIDE, SIDE, 3) and r.pixels.dtype == np.uint8
    assert [lt.step for lt in r.latents] == [2, 4, 6, STEPS]
    levels = backend.levels(STEPS)
    assert [lt.level for lt in r.latents] == [levels[s] for s in (2, 4, 6, STEPS)]
    assert all(lt.data.shape == (1, 4, SIDE // 8, SIDE // 8) for lt in r.latents)
    assert r.steps_run == STEPS


@pytest.mark.parametrize("scheduler", ["ddim", "euler"])
def test_resume_from_a_latent_reproduces_the_uninterrupted_result(scheduler: str) -> None:
    b = DiffusersImageBackend.tiny(scheduler=scheduler, threads=1)  # type: ignore[arg-type]
    full = b.fresh(SPEC)
    mid = next(lt for lt in full.latents if lt.step == 4)
    resumed = b.resume(SPEC, mid, 4)  # same level: no fresh noise is added
    assert resumed.steps_run == STEPS - 4
    assert np.array_equal(resumed.pixels, full.pixels)


def test_resume_with_fresh_noise_gives_a_different_picture_at_lower_cost(
    backend: DiffusersImageBackend,
) -> None:
    full = backend.fresh(SPEC)
    levels = backend.levels(STEPS)
    source = pick_latent(full.latents, levels[3])
    assert source is not None and source.step == 4  # strictly cleaner than where step 3 begins
    var = backend.resume(replace(SPEC, seed=99), source, 3)
    assert var.steps_run == STEPS - 3
    assert float(np.abs(var.pixels.astype(int) - full.pixels).mean()) > 1.0
    with pytest.raises(ValueError, match="renoising"):  # a latent noisier than the start level
        backend.resume(SPEC, full.latents[0], 6)


def test_recompose_pins_the_kept_region_to_the_cached_latent(backend: DiffusersImageBackend) -> None:
    full = backend.fresh(SPEC)
    known = full.latents[-1]
    keep = ReusePolicy(keep_border=0.25).keep_mask(tuple(known.data.shape))
    assert keep.sum() > 0 and (1 - keep).sum() > 0
    other = replace(SPEC, prompt="a lighthouse on a cliff at dawn", seed=77, harvest=(STEPS,))
    out = backend.recompose(other, full.latents[0], known, keep, 2)
    final = out.latents[-1].data
    inside = keep.astype(bool).repeat(4, axis=1)
    # the kept border ends at the known latent up to the schedule's last bit of noise
    assert float(np.abs(final[inside] - known.data[inside]).max()) < 0.1
    assert float(np.abs(final[~inside] - known.data[~inside]).mean()) > 0.1


def test_stop_at_returns_the_latent_without_decoding(backend: DiffusersImageBackend) -> None:
    head = backend.fresh(replace(SPEC, harvest=(3,), stop_at=3))
    assert head.pixels.size == 0 and head.steps_run == 3
    assert [lt.step for lt in head.latents] == [3]


def test_split_hands_the_large_models_latent_to_the_small_one(backend: DiffusersImageBackend) -> None:
    large = DiffusersImageBackend.tiny(unet_size="large", threads=1)
    assert large.latent_space == backend.latent_space  # one VAE, one schedule
    split = SplitPolicy(large, backend, 0.5)
    out = split.render(SPEC)
    assert (out.large_steps, out.small_steps) == (STEPS // 2, STEPS - STEPS // 2)
    assert out.rendered.pixels.shape == (SIDE, SIDE, 3)
    # the split result is neither model's own picture
    assert not np.array_equal(out.rendered.pixels, large.fresh(SPEC).pixels)
    assert not np.array_equal(out.rendered.pixels, backend.fresh(SPEC).pixels)
    euler = DiffusersImageBackend.tiny(scheduler="euler", threads=1)
    with pytest.raises(ValueError, match="latent space"):
        SplitPolicy(euler, backend, 0.5)


def test_from_pretrained_loads_a_saved_pipeline(backend: DiffusersImageBackend, tmp_path: Path) -> None:
    backend.pipeline.save_pretrained(tmp_path / "tiny-sd")
    loaded = DiffusersImageBackend.from_pretrained(str(tmp_path / "tiny-sd"), device="cpu", threads=1)
    assert loaded.latent_space == backend.latent_space
    assert np.array_equal(loaded.fresh(SPEC).pixels, backend.fresh(SPEC).pixels)


def test_video_keyframes_survive_recomposition(video_backend: WanVideoBackend) -> None:
    spec = RenderSpec(
        "a dog running on a beach",
        SIDE,
        SIDE,
        STEPS,
        seed=3,
        frames=9,
        guidance_scale=5.0,
        harvest=(2, STEPS),
    )
    src = video_backend.fresh(spec)
    assert src.pixels.shape == (9, SIDE, SIDE, 3)
    mid = src.latents[0]
    assert video_backend.resume(spec, mid, 2).pixels.tobytes() == src.pixels.tobytes()  # exact resume
    keep = ReusePolicy(keep_frames=0.34).keep_mask(tuple(mid.data.shape))  # the first latent frame
    assert keep.ravel().tolist() == [1.0, 0.0, 0.0]
    other = replace(spec, prompt="a cat running on a beach", seed=8)
    out = video_backend.recompose(other, mid, src.latents[-1], keep, 2)
    first = float(np.abs(out.pixels[0].astype(int) - src.pixels[0]).mean())
    last = float(np.abs(out.pixels[-1].astype(int) - src.pixels[-1]).mean())
    assert first < 0.5 < last  # the keyframe is kept, the motion after it regenerated
