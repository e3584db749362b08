"""Intra-request step caching: diffusers' hooks that skip recomputing the denoiser between steps.

diffusers 0.42 offers these through ``CacheMixin.enable_cache`` on its transformer denoisers
(Wan, FLUX, CogVideoX, HunyuanVideo, LTX, ...): FirstBlockCache reruns the whole network only
when the first block's residual moved by more than ``threshold``; TaylorSeer recomputes every
``interval`` steps and extrapolates in between. ``UNet2DConditionModel`` has no ``CacheMixin``
(its blocks are not transformer blocks the hooks can find), so a Stable-Diffusion UNet backend
cannot use them; ``apply_step_cache`` says so instead of silently doing nothing.

The hooks are stateful across the steps of one generation: a loop of our own must open
``cache_context`` around each denoiser call and call ``reset`` when the generation ends, as the
diffusers pipelines do.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from cloud_hub.images.base import lib

StepCacheKind = Literal["first_block", "taylorseer"]


class StepCacheUnsupported(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class StepCacheConfig:
    kind: StepCacheKind
    threshold: float = 0.05  # first_block: relative change of the first block's residual
    interval: int = 3  # taylorseer: recompute every ``interval`` steps
    warmup: int = 2  # taylorseer: always compute the first steps
    # taylorseer: attention modules to cache, matched in full against module names. diffusers'
    # defaults ("^blocks.*attn", ...) fully match FLUX's "transformer_blocks.0.attn" but not
    # Wan's "blocks.0.attn1", where they silently hook nothing
    identifiers: tuple[str, ...] = (r"(transformer_blocks|single_transformer_blocks|blocks)\.\d+\.attn\d*",)

    def label(self) -> str:
        if self.kind == "first_block":
            return f"first_block(threshold={self.threshold})"
        return f"taylorseer(interval={self.interval}, warmup={self.warmup})"


def _diffusers_config(cfg: StepCacheConfig) -> Any:
    mod = lib("diffusers.hooks")
    FirstBlockCacheConfig, TaylorSeerCacheConfig = mod.FirstBlockCacheConfig, mod.TaylorSeerCacheConfig

    if cfg.kind == "first_block":
        return FirstBlockCacheConfig(threshold=cfg.threshold)
    return TaylorSeerCacheConfig(
        cache_interval=cfg.interval,
        disable_cache_before_step=cfg.warmup,
        taylor_factors_dtype=None,
        cache_identifiers=list(cfg.identifiers),
    )


def apply_step_cache(model: Any, cfg: StepCacheConfig) -> None:
    if not callable(getattr(model, "enable_cache", None)):
        raise StepCacheUnsupported(
            f"{type(model).__name__} offers no diffusers step cache (only transformer denoisers do)"
        )
    if cfg.kind == "taylorseer":
        names = [n for n, _ in model.named_modules()]
        if not any(re.fullmatch(p, n) for p in cfg.identifiers for n in names):
            raise StepCacheUnsupported(f"no module of {type(model).__name__} matches {cfg.identifiers}")
    model.enable_cache(_diffusers_config(cfg))


def reset(model: Any) -> None:
    """Forget the previous generation's cached residuals (a no-op without a cache)."""
    if getattr(model, "is_cache_enabled", False):
        model._reset_stateful_cache()


@contextmanager
def denoiser_call(model: Any, name: str, step: int, sigma: float, steps: int) -> Iterator[None]:
    """The context a cached denoiser needs around one call; plain when no cache is enabled."""
    if not getattr(model, "is_cache_enabled", False):
        yield
        return
    with model.cache_context(name, step_index=step, sigma=sigma, num_inference_steps=steps):
        yield


class CallCounter:
    """Counts the attention computations of one attention module, cached or not.

    It wraps the module's processor, which runs only when the attention is really computed: a
    cache hook that returns a cached or predicted output never reaches it (a forward hook on the
    module would fire either way). Compared against a run without the cache, the ratio is the
    share of attention compute the cache saved, independent of a noisy wall clock.
    """

    def __init__(self, attention: Any) -> None:
        self.calls = 0
        self._attention = attention
        self._inner = attention.processor
        attention.processor = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self._inner(*args, **kwargs)

    def close(self) -> None:
        self._attention.processor = self._inner
