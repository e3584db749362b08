from __future__ import annotations

import numpy as np
import pytest

from cloud_hub.images.base import RenderSpec
from cloud_hub.images.diffusers_backend import DiffusersImageBackend
from cloud_hub.images.step_cache import CallCounter, StepCacheConfig, StepCacheUnsupported, apply_step_cache
from cloud_hub.images.video_backend import WanVideoBackend
from tests.cloud_hub.images.conftest import SIDE

SPEC = RenderSpec(
    "waves breaking on rocks", SIDE, SIDE, 12, seed=2, frames=5, guidance_scale=5.0, harvest=(4,)
)


def test_a_unet_has_no_diffusers_step_cache(backend: DiffusersImageBackend) -> None:
    with pytest.raises(StepCacheUnsupported, match="UNet2DConditionModel"):
        apply_step_cache(backend.pipeline.unet, StepCacheConfig("first_block"))


def _attention_calls(backend: WanVideoBackend) -> tuple[int, np.ndarray, np.ndarray]:
    counter = CallCounter(backend.pipeline.transformer.blocks[-1].attn1)
    fresh = backend.fresh(SPEC)
    resumed = backend.resume(SPEC, fresh.latents[0], 4)  # our own loop, under the same cache
    counter.close()
    return counter.calls, fresh.pixels, resumed.pixels


def test_taylorseer_skips_transformer_compute_in_pipeline_and_resume(video_backend: WanVideoBackend) -> None:
    base_calls, base_fresh, base_resumed = _attention_calls(video_backend)
    assert base_calls == 2 * (12 + 8)  # cond + uncond at every step
    cached = WanVideoBackend.tiny(threads=1, step_cache=StepCacheConfig("taylorseer", interval=3, warmup=2))
    calls, fresh, resumed = _attention_calls(cached)
    assert calls < 0.6 * base_calls
    assert fresh.shape == base_fresh.shape and resumed.shape == base_resumed.shape
    # a second generation starts from a clean cache state: same figures again
    again, fresh2, _ = _attention_calls(cached)
    assert again == calls and np.array_equal(fresh2, fresh)


def test_first_block_cache_runs_under_both_loops() -> None:
    cached = WanVideoBackend.tiny(threads=1, step_cache=StepCacheConfig("first_block", threshold=0.5))
    calls, fresh, resumed = _attention_calls(cached)
    assert 0 < calls <= 2 * (12 + 8)
    assert fresh.shape == (5, SIDE, SIDE, 3) and resumed.shape == fresh.shape
    assert "first_block" in cached.name


def test_a_cache_that_would_hook_nothing_is_refused() -> None:
    model = WanVideoBackend.tiny(threads=1).pipeline.transformer
    with pytest.raises(StepCacheUnsupported, match="matches"):
        apply_step_cache(
            model, StepCacheConfig("taylorseer", identifiers=(r"transformer_blocks\.\d+\.attn",))
        )
