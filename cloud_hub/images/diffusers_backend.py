"""Stable-Diffusion-shaped image backend on diffusers: CLIP text encoder, UNet2DConditionModel,
AutoencoderKL, DDIM or Euler.

Meant for ``stabilityai/sd-turbo`` (1–4 steps: the small model of a cascade),
``stabilityai/stable-diffusion-2-1-base`` or ``stable-diffusion-v1-5`` (25–50 steps, where skipping
steps pays most), loaded with ``DiffusersImageBackend.from_pretrained(model_id_or_local_path,
device="cuda", dtype=torch.float16)``; SDXL and FLUX need their own backend file (extra
conditioning; FLUX is a transformer, where diffusers' step caches apply). On a GPU nothing
else changes: the same loop, with ``device="cuda"`` and half precision. Tests and the benchmark
use ``DiffusersImageBackend.tiny()``, the same classes with random weights (``tiny.py``).

A fresh generation runs the pipeline itself and harvests latents through
``callback_on_step_end``. The pipeline cannot start mid-schedule, so ``resume`` and ``recompose``
run the same denoising loop themselves over the scheduler's remaining timesteps; with no fresh
noise this reproduces the pipeline's result exactly (DDIM and Euler), which the tests check.

diffusers' intra-request step caches (FirstBlockCache, FasterCache, TaylorSeer, ...) hook
transformer blocks and are offered only by transformer denoisers (``CacheMixin``); a UNet has
none, so ``step_cache`` is refused here and measured on the Wan video backend instead.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from cloud_hub.images import tiny
from cloud_hub.images.base import F32, Latent, Rendered, RenderSpec, lib
from cloud_hub.images.diffusers_common import DiffusersBackend, latent_of, to_u8
from cloud_hub.images.schedules import SchedulerKind, schedule_for
from cloud_hub.images.step_cache import StepCacheConfig


class DiffusersImageBackend(DiffusersBackend):
    """One ``StableDiffusionPipeline``; every method blocks (callers run it in a worker thread)."""

    def __init__(
        self,
        pipe: Any,
        *,
        name: str,
        scheduler: SchedulerKind = "ddim",
        default_steps: int = 30,
        threads: int | None = None,
        step_cache: StepCacheConfig | None = None,
    ) -> None:
        if scheduler not in ("ddim", "euler"):
            raise ValueError("the image backend runs DDIM or Euler")
        super().__init__(
            pipe,
            name=name,
            kind=scheduler,
            schedule=schedule_for(scheduler),
            denoiser=pipe.unet,  # a step cache raises for a UNet: see the module doc
            default_steps=default_steps,
            threads=threads,
            step_cache=step_cache,
        )
        self._kind: SchedulerKind = scheduler

    @classmethod
    def tiny(
        cls,
        *,
        unet_size: tiny.UnetSize = "small",
        scheduler: SchedulerKind = "ddim",
        weights_seed: int = 0,
        name: str | None = None,
        default_steps: int = 20,
        threads: int | None = None,
    ) -> DiffusersImageBackend:
        StableDiffusionPipeline = lib("diffusers").StableDiffusionPipeline

        parts = tiny.sd_components(unet_size=unet_size, scheduler_kind=scheduler, weights_seed=weights_seed)
        pipe = StableDiffusionPipeline(**parts)
        return cls(
            pipe,
            name=name or f"tiny-sd-{unet_size}",
            scheduler=scheduler,
            default_steps=default_steps,
            threads=threads,
        )

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        *,
        scheduler: SchedulerKind = "ddim",
        device: str = "cuda",
        dtype: torch.dtype | None = None,
        name: str | None = None,
        default_steps: int = 30,
        threads: int | None = None,
    ) -> DiffusersImageBackend:
        """A hub model id (``stabilityai/sd-turbo``) or a folder written by ``save_pretrained``."""
        mod = lib("diffusers")
        DDIMScheduler, EulerDiscreteScheduler, StableDiffusionPipeline = (
            mod.DDIMScheduler,
            mod.EulerDiscreteScheduler,
            mod.StableDiffusionPipeline,
        )

        pipe = StableDiffusionPipeline.from_pretrained(
            model, dtype=dtype or (torch.float16 if device == "cuda" else torch.float32)
        )
        swap = DDIMScheduler if scheduler == "ddim" else EulerDiscreteScheduler
        pipe.scheduler = swap.from_config(pipe.scheduler.config)
        pipe = pipe.to(device)
        return cls(
            pipe, name=name or model, scheduler=scheduler, default_steps=default_steps, threads=threads
        )

    # --- generation ---------------------------------------------------------------------------

    def fresh(self, spec: RenderSpec) -> Rendered:
        began = time.perf_counter()
        levels = self.levels(spec.steps)
        stop = spec.stop_at if 0 < spec.stop_at < spec.steps else 0
        out, harvested = self._run_pipeline(spec, levels, stop, output_type="latent" if stop else "np")
        pixels = np.zeros((0,), np.uint8) if stop else to_u8(out.images[0])
        return Rendered(pixels, tuple(harvested), stop or spec.steps, time.perf_counter() - began)

    def _loop(
        self, spec: RenderSpec, source: Latent, start: int, known: Latent | None, keep: F32 | None
    ) -> Rendered:
        began = time.perf_counter()
        pipe, device = self._pipe, self._pipe.device
        levels, gen = self._begin(spec, start)
        sched = pipe.scheduler
        dtype = pipe.unet.dtype
        with torch.inference_mode():
            cfg = spec.guidance_scale > 1.0
            cond, uncond = pipe.encode_prompt(spec.prompt, device, 1, cfg, spec.negative_prompt or None)
            embeds = torch.cat([uncond, cond]) if cfg else cond
            x, pin = self._start_latent(source, levels[start], gen, known, keep)
            harvested: list[Latent] = []
            timesteps = sched.timesteps
            for i in range(start, spec.steps):
                t = timesteps[i]
                inp = torch.cat([x, x]) if cfg else x
                inp = sched.scale_model_input(inp, t)
                eps = pipe.unet(inp.to(dtype), t, encoder_hidden_states=embeds, return_dict=False)[0]
                if cfg:
                    e_u, e_c = eps.chunk(2)
                    eps = e_u + spec.guidance_scale * (e_c - e_u)
                x = sched.step(eps, t, x, generator=gen, return_dict=False, **self._step_kwargs(spec))[0]
                x = pin(x, levels[i + 1])
                if i + 1 in spec.harvest:
                    harvested.append(latent_of(x, i + 1, spec.steps, levels[i + 1]))
            image = pipe.vae.decode(x.to(pipe.vae.dtype) / pipe.vae.config.scaling_factor, return_dict=False)[
                0
            ]
            pixels = pipe.image_processor.postprocess(image, output_type="np")[0]
        return Rendered(to_u8(pixels), tuple(harvested), spec.steps - start, time.perf_counter() - began)

    def encode_image(self, pixels: np.ndarray) -> F32:
        """The clean latent of an image (used to reuse an asset stored without latents)."""
        pipe = self._pipe
        with torch.inference_mode():
            img = torch.from_numpy(pixels.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
            dist = pipe.vae.encode(img.to(pipe.device, pipe.vae.dtype)).latent_dist
            z = dist.mean * pipe.vae.config.scaling_factor
        out: F32 = z.to("cpu", torch.float32).numpy()
        return out

    def _step_kwargs(self, spec: RenderSpec) -> dict[str, Any]:
        return {"eta": spec.eta} if self._kind == "ddim" else {}
