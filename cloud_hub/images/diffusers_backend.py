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

import hashlib
import json
import os
import time
from typing import Any

import numpy as np
import torch

from cloud_hub.images import tiny
from cloud_hub.images.base import F32, Latent, Rendered, RenderSpec, lib
from cloud_hub.images.schedules import SchedulerKind, begin_at, schedule_for
from cloud_hub.images.step_cache import StepCacheConfig, apply_step_cache


def default_threads() -> int:
    """Leave one core to the event loop, the embedder and the link: two torch threads on a
    two-core machine that is doing anything else are several times slower than one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def latent_fingerprint(vae: Any, scheduler: Any, kind: str) -> str:
    """Same VAE weights and config plus same noise schedule ⇒ latents are interchangeable."""
    # keys starting with "_" record where a config came from, not what it is
    vae_config = {k: v for k, v in dict(vae.config).items() if not k.startswith("_")}
    h = hashlib.sha256(json.dumps(vae_config, sort_keys=True, default=str).encode())
    first = next(vae.parameters()).detach().to("cpu", torch.float32).contiguous()
    h.update(first.numpy().tobytes())
    sched = {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")}
    h.update(json.dumps({"kind": kind, **sched}, sort_keys=True, default=str).encode())
    return f"{kind}:{h.hexdigest()[:16]}"


class DiffusersImageBackend:
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
        if pipe.device.type == "cpu":
            torch.set_num_threads(threads or default_threads())
        if step_cache is not None:
            apply_step_cache(pipe.unet, step_cache)  # raises for a UNet: see the module doc
        pipe.set_progress_bar_config(disable=True)
        self._pipe = pipe
        self._name = name
        self._kind: SchedulerKind = scheduler
        self._schedule = schedule_for(scheduler)
        self._default_steps = default_steps
        self._latent_space = latent_fingerprint(pipe.vae, pipe.scheduler, scheduler)

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

    @property
    def name(self) -> str:
        return self._name

    @property
    def latent_space(self) -> str:
        return self._latent_space

    @property
    def default_steps(self) -> int:
        return self._default_steps

    @property
    def pipeline(self) -> Any:
        return self._pipe

    def levels(self, steps: int) -> list[float]:
        self._pipe.scheduler.set_timesteps(steps, device=self._pipe.device)
        return self._schedule.levels(self._pipe.scheduler)

    # --- generation ---------------------------------------------------------------------------

    def fresh(self, spec: RenderSpec) -> Rendered:
        began = time.perf_counter()
        levels = self.levels(spec.steps)
        wanted = set(spec.harvest)
        harvested: list[Latent] = []

        stop = spec.stop_at if 0 < spec.stop_at < spec.steps else 0
        if stop:
            wanted.add(stop)

        def keep(pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            done = i + 1
            if done in wanted:
                harvested.append(self._latent(kwargs["latents"], done, spec.steps, levels[done]))
            if done == stop:
                pipe._interrupt = True  # the pipeline skips the remaining steps
            return kwargs

        with torch.inference_mode():
            out = self._pipe(
                spec.prompt,
                negative_prompt=spec.negative_prompt or None,
                height=spec.height,
                width=spec.width,
                num_inference_steps=spec.steps,
                guidance_scale=spec.guidance_scale,
                generator=self._generator(spec.seed),
                output_type="latent" if stop else "np",
                callback_on_step_end=keep,
                callback_on_step_end_tensor_inputs=["latents"],
            )
        pixels = np.zeros((0,), np.uint8) if stop else _to_u8(out.images[0])
        return Rendered(pixels, tuple(harvested), stop or spec.steps, time.perf_counter() - began)

    def resume(self, spec: RenderSpec, source: Latent, start: int) -> Rendered:
        return self._loop(spec, source, start, None, None)

    def recompose(self, spec: RenderSpec, source: Latent, known: Latent, keep: F32, start: int) -> Rendered:
        return self._loop(spec, source, start, known, keep)

    def _loop(
        self, spec: RenderSpec, source: Latent, start: int, known: Latent | None, keep: F32 | None
    ) -> Rendered:
        if not 0 <= start < spec.steps:
            raise ValueError(f"start {start} outside 0..{spec.steps - 1}")
        began = time.perf_counter()
        pipe, device = self._pipe, self._pipe.device
        levels = self.levels(spec.steps)
        sched = pipe.scheduler
        begin_at(sched, start)
        gen = self._generator(spec.seed)
        dtype = pipe.unet.dtype
        with torch.inference_mode():
            cfg = spec.guidance_scale > 1.0
            cond, uncond = pipe.encode_prompt(spec.prompt, device, 1, cfg, spec.negative_prompt or None)
            embeds = torch.cat([uncond, cond]) if cfg else cond
            x = torch.from_numpy(source.data).to(device, torch.float32)
            noise = torch.randn(x.shape, generator=gen, device=gen.device).to(device)
            x = self._schedule.renoise(x, source.level, levels[start], noise)
            pin = None if keep is None else torch.from_numpy(keep).to(device, torch.float32)
            clean = None if known is None else torch.from_numpy(known.data).to(device, torch.float32)
            pin_noise = torch.randn(x.shape, generator=gen, device=gen.device).to(device)
            if pin is not None and clean is not None:
                x = pin * self._schedule.noised(clean, levels[start], pin_noise) + (1 - pin) * x
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
                if pin is not None and clean is not None:
                    x = pin * self._schedule.noised(clean, levels[i + 1], pin_noise) + (1 - pin) * x
                if i + 1 in spec.harvest:
                    harvested.append(self._latent(x, i + 1, spec.steps, levels[i + 1]))
            image = pipe.vae.decode(x.to(pipe.vae.dtype) / pipe.vae.config.scaling_factor, return_dict=False)[
                0
            ]
            pixels = pipe.image_processor.postprocess(image, output_type="np")[0]
        return Rendered(_to_u8(pixels), tuple(harvested), spec.steps - start, time.perf_counter() - began)

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

    def _latent(self, x: torch.Tensor, step: int, of: int, level: float) -> Latent:
        data: F32 = x.detach().to("cpu", torch.float32).numpy().copy()
        return Latent(step=step, of_steps=of, level=level, data=data)

    def _generator(self, seed: int) -> torch.Generator:
        # CPU generators give the same noise on every device: a seed means one picture everywhere
        return torch.Generator("cpu").manual_seed(seed)

    def close(self) -> None:
        self._pipe = None


def _to_u8(img: Any) -> np.ndarray:
    arr = np.asarray(img, dtype=np.float32)
    out: np.ndarray = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
    return out
