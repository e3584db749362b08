"""The split, cascade and step-cache measurements of ``cloud-hub bench images``.

- Split: a large UNet runs the first share of the steps, a small one the rest (one VAE, one
  schedule). Per share: wall time, the large model's share of the steps and the distance of the
  result to the large model's own picture of the same seed (how much of "large" survives).
- Cascade: what one small and one large picture cost here, and the escalation rate below which
  small-first beats large-only. Whether the gate escalates the right pictures needs real
  weights (see the docs' recipe).
- Step caches: diffusers' FirstBlockCache and TaylorSeer on the Wan transformer: wall time, the
  share of last-block attention calls really computed and the distance to the uncached result.
  On the UNet they are unavailable, and the figures say so.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from cloud_hub.images import tiny
from cloud_hub.images.base import RenderSpec
from cloud_hub.images.cascade import SplitPolicy
from cloud_hub.images.diffusers_backend import DiffusersImageBackend
from cloud_hub.images.features import ThumbnailDistance
from cloud_hub.images.step_cache import CallCounter, StepCacheConfig, StepCacheUnsupported, apply_step_cache
from cloud_hub.images.video_backend import WanVideoBackend

SPLITS = (0.25, 0.5, 0.75)
CACHES = (
    StepCacheConfig("first_block", threshold=0.05),
    StepCacheConfig("first_block", threshold=0.2),
    StepCacheConfig("taylorseer", interval=3, warmup=2),
)


def measure(video: bool, prompts: list[str], side: tuple[int, int], steps: int) -> dict[str, Any]:
    if video:
        return {"step_cache": _step_caches(prompts, side, steps)}
    out = _split_and_cascade(prompts, side, steps)
    try:
        apply_step_cache(DiffusersImageBackend.tiny().pipeline.unet, CACHES[0])
        out["step_cache"] = {"unet": "applied"}
    except StepCacheUnsupported as exc:
        out["step_cache"] = {"unet": f"unsupported: {exc}"}
    return out


def _split_and_cascade(prompts: list[str], side: tuple[int, int], steps: int) -> dict[str, Any]:
    dist = ThumbnailDistance()
    small = DiffusersImageBackend.tiny(unet_size="small")
    large = DiffusersImageBackend.tiny(unet_size="large")
    specs = [RenderSpec(p, side[0], side[1], steps, seed=31 + i) for i, p in enumerate(prompts)]
    for backend in (small, large):  # the first call of a pipeline pays for warm-up
        backend.fresh(specs[0])
    large_runs = [large.fresh(s) for s in specs]
    small_runs = [small.fresh(s) for s in specs]
    c_large = statistics.mean(r.wall_s for r in large_runs)
    c_small = statistics.mean(r.wall_s for r in small_runs)
    # per-step denoiser cost without the pipeline's fixed overhead (text encoder, VAE, PNG)
    u_small, u_large = _unet_ms(small, side), _unet_ms(large, side)
    ref = [dist.thumb(r.pixels) for r in large_runs]
    splits: dict[str, Any] = {
        "unet_step_ms": {"small": round(u_small, 2), "large": round(u_large, 2)},
        "large_only": {"wall_s": round(c_large, 4), "unet_ms": round(steps * u_large, 1)},
        "small_only": {
            "wall_s": round(c_small, 4),
            "unet_ms": round(steps * u_small, 1),
            "distance_to_large": round(
                statistics.mean(
                    dist.distance(dist.thumb(r.pixels), t) for r, t in zip(small_runs, ref, strict=True)
                ),
                5,
            ),
        },
    }
    for share in SPLITS:
        policy = SplitPolicy(large, small, share)
        outs = [policy.render(s) for s in specs]
        splits[f"split_{share}"] = {
            "large_steps": outs[0].large_steps,
            "small_steps": outs[0].small_steps,
            "wall_s": round(statistics.mean(o.large_s + o.small_s for o in outs), 4),
            "unet_ms": round(outs[0].large_steps * u_large + outs[0].small_steps * u_small, 1),
            "handoff_bytes_fp16": int(outs[0].handoff.data.size * 2),
            "distance_to_large": round(
                statistics.mean(
                    dist.distance(dist.thumb(o.rendered.pixels), t) for o, t in zip(outs, ref, strict=True)
                ),
                5,
            ),
        }
    cascade = {
        "small_wall_s": round(c_small, 4),
        "large_wall_s": round(c_large, 4),
        # small first, then large for a share r: c_s + r·c_l < c_l  ⇔  r < 1 - c_s / c_l
        "break_even_escalation_rate_wall": round(1.0 - c_small / c_large, 4),
        "break_even_escalation_rate_unet": round(1.0 - u_small / u_large, 4),
    }
    return {"split": splits, "cascade": cascade}


def _unet_ms(backend: DiffusersImageBackend, side: tuple[int, int], calls: int = 15) -> float:
    unet = backend.pipeline.unet
    x = torch.randn(2, 4, side[1] // 8, side[0] // 8)  # a classifier-free-guidance batch
    text = torch.randn(2, tiny.MAX_TOKENS, tiny.TEXT_DIM)
    with torch.inference_mode():
        unet(x, 500, encoder_hidden_states=text)
        began = time.perf_counter()
        for _ in range(calls):
            unet(x, 500, encoder_hidden_states=text)
    return (time.perf_counter() - began) / calls * 1000.0


def _step_caches(prompts: list[str], side: tuple[int, int], steps: int, repeats: int = 3) -> dict[str, Any]:
    dist = ThumbnailDistance()
    specs = [
        RenderSpec(p, side[0], side[1], steps, seed=41 + i, frames=9, guidance_scale=5.0)
        for i, p in enumerate(prompts)
    ]

    def run(cfg: StepCacheConfig | None) -> tuple[float, int, list[Any]]:
        backend = WanVideoBackend.tiny(step_cache=cfg)
        model = backend.pipeline.transformer
        counter = CallCounter(model.blocks[-1].attn1)
        walls, outs = [], []
        for _ in range(repeats):
            began = time.perf_counter()
            outs = [backend.fresh(s).pixels for s in specs]
            walls.append(time.perf_counter() - began)
        counter.close()
        return statistics.median(walls), counter.calls, outs

    base_wall, base_calls, base_out = run(None)
    figures: dict[str, Any] = {
        "none": {"wall_s": round(base_wall, 4), "last_block_self_attention_calls": base_calls}
    }
    for cfg in CACHES:
        wall, calls, outs = run(cfg)
        figures[cfg.label()] = {
            "wall_s": round(wall, 4),
            "wall_saved": round(1.0 - wall / base_wall, 4),
            "computed_share": round(calls / base_calls, 4),
            "distance_to_uncached": round(
                statistics.mean(
                    dist.distance(dist.thumb(a), dist.thumb(b)) for a, b in zip(outs, base_out, strict=True)
                ),
                6,
            ),
        }
    return figures
