"""What the diffusers image and video backends share: their set-up, their accessors, and the first
and last moves of a resumed denoising loop.

Each backend keeps its own pipeline call and its own step, which is where the two families really
differ (a UNet predicting noise under DDIM/Euler against a DiT predicting flow velocity); what is
here is the same in both, down to the order random numbers are drawn in, which the bit-exact
resume tests depend on.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cloud_hub.images.base import F32, Latent, Rendered, RenderSpec
from cloud_hub.images.schedules import NoiseSchedule, SchedulerKind, begin_at
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


def to_u8(img: Any) -> np.ndarray:
    arr = np.asarray(img, dtype=np.float32)
    out: np.ndarray = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
    return out


def latent_of(x: torch.Tensor, step: int, of: int, level: float) -> Latent:
    data: F32 = x.detach().to("cpu", torch.float32).numpy().copy()
    return Latent(step=step, of_steps=of, level=level, data=data)


def cpu_generator(seed: int) -> torch.Generator:
    # CPU generators give the same noise on every device: a seed means one picture everywhere
    return torch.Generator("cpu").manual_seed(seed)


@dataclass(frozen=True)
class Pin:
    """The part of a cached clean latent that ``recompose`` holds in place, re-noised to each step's
    level with one fixed noise draw; with no mask (``resume``) it leaves the latent alone."""

    schedule: NoiseSchedule
    mask: torch.Tensor | None
    clean: torch.Tensor | None
    noise: torch.Tensor

    def __call__(self, x: torch.Tensor, level: float) -> torch.Tensor:
        if self.mask is None or self.clean is None:
            return x
        return self.mask * self.schedule.noised(self.clean, level, self.noise) + (1 - self.mask) * x


class DiffusersBackend:
    """Set-up and accessors common to the backends; a subclass supplies ``fresh`` and ``_loop``.

    Every method blocks (callers run it in a worker thread).
    """

    def __init__(
        self,
        pipe: Any,
        *,
        name: str,
        kind: SchedulerKind,
        schedule: NoiseSchedule,
        denoiser: Any,
        default_steps: int,
        threads: int | None,
        step_cache: StepCacheConfig | None,
    ) -> None:
        if pipe.device.type == "cpu":
            torch.set_num_threads(threads or default_threads())
        if step_cache is not None:
            apply_step_cache(denoiser, step_cache)
        pipe.set_progress_bar_config(disable=True)
        self._pipe = pipe
        self._name = name
        self._schedule = schedule
        self._default_steps = default_steps
        self._latent_space = latent_fingerprint(pipe.vae, pipe.scheduler, kind)

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

    def resume(self, spec: RenderSpec, source: Latent, start: int) -> Rendered:
        return self._loop(spec, source, start, None, None)

    def recompose(self, spec: RenderSpec, source: Latent, known: Latent, keep: F32, start: int) -> Rendered:
        return self._loop(spec, source, start, known, keep)

    def _loop(
        self, spec: RenderSpec, source: Latent, start: int, known: Latent | None, keep: F32 | None
    ) -> Rendered:
        raise NotImplementedError

    def _run_pipeline(
        self, spec: RenderSpec, levels: list[float], stop: int, **extra: Any
    ) -> tuple[Any, list[Latent]]:
        """The pipeline itself on ``spec`` from pure noise (``extra``: the family's own arguments),
        and the latents it passed through at ``spec.harvest``; with ``stop`` > 0, also the one after
        that many steps, where the pipeline is interrupted."""
        wanted = set(spec.harvest) | ({stop} if stop else set())
        harvested: list[Latent] = []

        def keep(pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            done = i + 1
            if done in wanted:
                harvested.append(latent_of(kwargs["latents"], done, spec.steps, levels[done]))
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
                generator=cpu_generator(spec.seed),
                callback_on_step_end=keep,
                callback_on_step_end_tensor_inputs=["latents"],
                **extra,
            )
        return out, harvested

    def _begin(self, spec: RenderSpec, start: int) -> tuple[list[float], torch.Generator]:
        """The levels of ``spec``'s schedule, the scheduler set to begin at ``start``, and the
        generator for the loop's noise."""
        if not 0 <= start < spec.steps:
            raise ValueError(f"start {start} outside 0..{spec.steps - 1}")
        levels = self.levels(spec.steps)
        begin_at(self._pipe.scheduler, start)
        return levels, cpu_generator(spec.seed)

    def _start_latent(
        self,
        source: Latent,
        level: float,
        gen: torch.Generator,
        known: Latent | None,
        keep: F32 | None,
    ) -> tuple[torch.Tensor, Pin]:
        """``source`` re-noised to ``level``, with the pinned region already blended in."""
        device = self._pipe.device
        x = torch.from_numpy(source.data).to(device, torch.float32)
        noise = torch.randn(x.shape, generator=gen, device=gen.device).to(device)
        x = self._schedule.renoise(x, source.level, level, noise)
        pin = Pin(
            self._schedule,
            mask=None if keep is None else torch.from_numpy(keep).to(device, torch.float32),
            clean=None if known is None else torch.from_numpy(known.data).to(device, torch.float32),
            # drawn even when nothing is pinned, so resume and recompose use the same noise after it
            noise=torch.randn(x.shape, generator=gen, device=gen.device).to(device),
        )
        return pin(x, level), pin

    def close(self) -> None:
        self._pipe = None
