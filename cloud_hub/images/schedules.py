"""Noise levels of the diffusers schedulers the backends use, and moving a latent between them.

Reuse needs two operations the pipelines do not expose:

- ``renoise``: take a latent at noise level ``a`` to a noisier level ``b`` by the forward process
  q(x_b | x_a), with fresh noise. Resuming a cached intermediate latent this way is what makes a
  variation differ from its source: with ``a == b`` nothing is added and the continuation is the
  uninterrupted trajectory (bit-exact for deterministic samplers, which the tests check).
- ``noised``: a clean latent brought to level ``b``, for inpainting-style blending.

Each scheduler family has its own parametrisation of "level", so a level is only meaningful
inside one family; the backends put the family into their ``latent_space`` string.

- DDIM (variance preserving): x = sqrt(ᾱ)·x0 + sqrt(1-ᾱ)·ε, level = 1-ᾱ.
- Euler (k-diffusion): x = x0 + σ·ε, level = σ.
- Flow matching (Wan, FLUX, SD3): x = (1-σ)·x0 + σ·ε, level = σ.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Protocol

import torch

SchedulerKind = Literal["ddim", "euler", "flow"]


class NoiseSchedule(Protocol):
    kind: SchedulerKind

    def levels(self, scheduler: Any) -> list[float]:
        """After ``set_timesteps(n)``: the level entering each of the n steps, then 0-ish (clean)."""
        ...

    def renoise(self, x: torch.Tensor, src: float, dst: float, noise: torch.Tensor) -> torch.Tensor: ...

    def noised(self, clean: torch.Tensor, level: float, noise: torch.Tensor) -> torch.Tensor: ...


def _check(src: float, dst: float) -> None:
    # a small tolerance: levels of the same step computed from float32 tables may differ in the 7th digit
    if dst < src - 1e-6:
        raise ValueError(f"cannot denoise by renoising: level {src} → {dst}")


class DdimSchedule:
    kind: SchedulerKind = "ddim"

    def levels(self, scheduler: Any) -> list[float]:
        ac = scheduler.alphas_cumprod
        out = [1.0 - float(ac[int(t)]) for t in scheduler.timesteps]
        out.append(1.0 - float(scheduler.final_alpha_cumprod))
        return out

    def renoise(self, x: torch.Tensor, src: float, dst: float, noise: torch.Tensor) -> torch.Tensor:
        _check(src, dst)
        keep = (1.0 - dst) / (1.0 - src)  # ᾱ_dst / ᾱ_src ≤ 1
        if keep >= 1.0:
            return x
        return math.sqrt(keep) * x + math.sqrt(1.0 - keep) * noise.to(x.dtype)

    def noised(self, clean: torch.Tensor, level: float, noise: torch.Tensor) -> torch.Tensor:
        return math.sqrt(1.0 - level) * clean + math.sqrt(level) * noise.to(clean.dtype)


class EulerSchedule:
    kind: SchedulerKind = "euler"

    def levels(self, scheduler: Any) -> list[float]:
        return [float(s) for s in scheduler.sigmas]

    def renoise(self, x: torch.Tensor, src: float, dst: float, noise: torch.Tensor) -> torch.Tensor:
        _check(src, dst)
        gap = dst * dst - src * src
        if gap <= 0.0:
            return x
        return x + math.sqrt(gap) * noise.to(x.dtype)

    def noised(self, clean: torch.Tensor, level: float, noise: torch.Tensor) -> torch.Tensor:
        return clean + level * noise.to(clean.dtype)


class FlowSchedule:
    kind: SchedulerKind = "flow"

    def levels(self, scheduler: Any) -> list[float]:
        return [float(s) for s in scheduler.sigmas]

    def renoise(self, x: torch.Tensor, src: float, dst: float, noise: torch.Tensor) -> torch.Tensor:
        _check(src, dst)
        if dst <= src:
            return x
        if src >= 1.0:
            raise ValueError("a latent of pure noise carries nothing to resume from")
        scale = (1.0 - dst) / (1.0 - src)
        # x_src = (1-s)x0 + s·ε: scaling keeps the x0 part right, then top the noise up to σ_dst
        var = max(dst * dst - (scale * src) ** 2, 0.0)
        return scale * x + math.sqrt(var) * noise.to(x.dtype)

    def noised(self, clean: torch.Tensor, level: float, noise: torch.Tensor) -> torch.Tensor:
        return (1.0 - level) * clean + level * noise.to(clean.dtype)


def schedule_for(kind: SchedulerKind) -> NoiseSchedule:
    schedules: dict[SchedulerKind, NoiseSchedule] = {
        "ddim": DdimSchedule(),
        "euler": EulerSchedule(),
        "flow": FlowSchedule(),
    }
    return schedules[kind]


def begin_at(scheduler: Any, start: int) -> None:
    """Tell a scheduler that counts its own steps where a resumed loop begins."""
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
