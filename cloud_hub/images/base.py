"""The interface every hub diffusion backend implements, and the values that cross it.

A backend denoises; it knows nothing of tenants, stores or reuse policy. Three entry points cover
every way the policy reuses work:

- ``fresh``: from pure noise, harvesting latents at chosen steps for later requests;
- ``resume``: from a cached latent, re-noised with fresh noise up to the noise level where the
  new request's schedule begins, so the first ``start`` steps are skipped;
- ``recompose``: like ``resume``, but at every step the region outside ``keep`` is regenerated
  while the region inside it is pinned to a cached clean latent noised to the current level
  (inpainting-style blending), so a cached layout or background survives.

Latents cross as float32 numpy arrays tagged with their noise level in the backend's own
parametrisation; two backends may exchange latents only when their ``latent_space`` strings are
equal (same VAE, same noise schedule).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


def lib(module: str) -> Any:
    """A diffusers / transformers module with its members typed ``Any``: both ship type hints
    but leave constructors untyped, which strict checking would reject at every call."""
    return importlib.import_module(module)


@dataclass(frozen=True, slots=True)
class RenderSpec:
    prompt: str
    width: int
    height: int
    steps: int
    seed: int
    guidance_scale: float = 7.5
    negative_prompt: str = ""
    # harvest the latent after these many steps (1..steps); ``steps`` itself is the clean latent
    harvest: tuple[int, ...] = ()
    frames: int = 1  # video backends only
    # DDIM's eta in resumed steps (0: deterministic); other samplers ignore it
    eta: float = 0.0
    # stop after this many steps without decoding (0: run to the end); the latent at that step
    # is harvested and ``pixels`` is empty: the head of a split schedule
    stop_at: int = 0


@dataclass(frozen=True, slots=True)
class Latent:
    """A latent after ``step`` of ``of_steps`` denoising steps, at noise ``level`` (0 = clean)."""

    step: int
    of_steps: int
    level: float
    data: F32


@dataclass(frozen=True, slots=True)
class Rendered:
    """``pixels``: H×W×3 uint8 for an image, F×H×W×3 for a video."""

    pixels: U8
    latents: tuple[Latent, ...]
    steps_run: int
    wall_s: float


@runtime_checkable
class ImageBackend(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def latent_space(self) -> str:
        """Identifies VAE + noise schedule: latents move only between equal values."""
        ...

    @property
    def default_steps(self) -> int: ...

    def fresh(self, spec: RenderSpec) -> Rendered:
        """Denoise from pure noise seeded by ``spec.seed``."""
        ...

    def resume(self, spec: RenderSpec, source: Latent, start: int) -> Rendered:
        """Skip the first ``start`` of ``spec.steps`` steps, beginning from ``source`` re-noised
        (with noise seeded by ``spec.seed``) to the level where step ``start`` begins; ``source``
        must be no noisier than that level."""
        ...

    def recompose(self, spec: RenderSpec, source: Latent, known: Latent, keep: F32, start: int) -> Rendered:
        """``resume``, with the region where ``keep`` is 1 pinned to ``known`` (a clean latent)
        noised to each step's level. ``keep`` broadcasts against the latent."""
        ...

    def levels(self, steps: int) -> list[float]:
        """Noise level of the latent entering each of ``steps`` steps, then of the clean result."""
        ...

    def close(self) -> None: ...
