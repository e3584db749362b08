"""Calibrating the variation guarantee and the skip table on the model that serves.

How far apart two pictures must be to count as different depends on the model: a model that
fixes the layout in its first steps leaves variations close to their source however many steps
run again. So both numbers are measured on the serving backend, on prompts kept apart from any
benchmark stream:

1. ``threshold`` = ``floor`` × the ``percentile``-th percentile of distances between independent
   fresh generations of the same prompt (different seeds). With the defaults (a quarter of the
   5th percentile) a return must be at least a quarter as far from anything its user holds as
   two independent pictures of one prompt nearly always are; fresh pictures clear it with a wide
   margin, so a fresh fallback never needs more than one try in practice.
2. The table's top row (identical prompts) = the largest skipped share at which at least
   ``pass_rate`` of variations, made the way the service makes them, clear the threshold. Lower
   rows are fixed shares of it (``reuse.ROW_SHARES``): how much a less similar prompt may
   inherit is a question of prompt adherence, which needs real weights and a CLIP score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from cloud_hub.images.base import ImageBackend, RenderSpec
from cloud_hub.images.features import ThumbnailDistance
from cloud_hub.images.reuse import ReusePolicy, SkipTable, pick_latent

# up to half the schedule: the largest share whose quality published work checked (NIRVANA skips
# at most 25 of 50 steps); beyond it only a quality score on real weights can justify skipping
DEFAULT_GRID = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)


@dataclass(frozen=True, slots=True)
class Calibration:
    threshold: float
    fresh_distances: list[float]
    # skipped share → distances of variations from their source
    variation_distances: dict[float, list[float]] = field(default_factory=dict)
    top_skip: float = 0.0

    def pass_rate(self, skip: float) -> float:
        d = self.variation_distances.get(skip, [])
        return float(np.mean([x >= self.threshold for x in d])) if d else 0.0

    def summary(self) -> dict[str, object]:
        fresh = np.asarray(self.fresh_distances)
        return {
            "threshold": round(self.threshold, 5),
            "fresh_distance_p5": round(float(np.percentile(fresh, 5)), 5),
            "fresh_distance_median": round(float(np.median(fresh)), 5),
            "fresh_pairs": len(self.fresh_distances),
            "top_skip": self.top_skip,
            "variation_pass_rate": {str(k): round(self.pass_rate(k), 3) for k in self.variation_distances},
            "variation_distance_median": {
                str(k): round(float(np.median(v)), 5) for k, v in self.variation_distances.items()
            },
        }


def calibrate(
    backend: ImageBackend,
    prompts: Sequence[str],
    *,
    width: int,
    height: int,
    steps: int,
    base: ReusePolicy | None = None,
    seeds: int = 3,
    floor: float = 0.25,
    percentile: float = 5.0,
    pass_rate: float = 0.9,
    grid: Sequence[float] = DEFAULT_GRID,
    guidance_scale: float = 7.5,
    frames: int = 1,
    progress: Callable[[], None] | None = None,
) -> tuple[ReusePolicy, Calibration]:
    """A policy whose threshold and table are measured on ``backend`` (see the module doc)."""
    if seeds < 2 or not prompts:
        raise ValueError("calibration needs prompts and at least two seeds per prompt")
    base = base or ReusePolicy()
    dist = ThumbnailDistance()
    levels = backend.levels(steps)
    fresh_d: list[float] = []
    var_d: dict[float, list[float]] = {s: [] for s in grid}
    for p, prompt in enumerate(prompts):
        thumbs, sources = [], []
        for s in range(seeds):
            spec = RenderSpec(
                prompt,
                width,
                height,
                steps,
                seed=10_000 * p + s,
                guidance_scale=guidance_scale,
                harvest=base.harvest_steps(steps),
                frames=frames,
            )
            r = backend.fresh(spec)
            thumbs.append(dist.thumb(r.pixels))
            sources.append(r)
            if progress:
                progress()
        fresh_d += [dist.distance(a, b) for i, a in enumerate(thumbs) for b in thumbs[i + 1 :]]
        src, src_thumb = sources[0], thumbs[0]
        for skip in grid:
            start = min(round(skip * steps), steps - 1)
            latent = pick_latent(src.latents, levels[start])
            if latent is None:
                continue
            spec = RenderSpec(
                prompt,
                width,
                height,
                steps,
                seed=777_000 + 100 * p + start,
                guidance_scale=guidance_scale,
                eta=base.eta,
                frames=frames,
            )
            var = backend.resume(spec, latent, start)
            var_d[skip].append(dist.distance(dist.thumb(var.pixels), src_thumb))
            if progress:
                progress()
    threshold = floor * float(np.percentile(fresh_d, percentile))
    cal = Calibration(threshold, fresh_d, var_d)
    top = 0.0
    for skip in sorted(grid):  # the largest share up to which every share passes
        if cal.pass_rate(skip) < pass_rate:
            break
        top = skip
    cal = Calibration(threshold, fresh_d, var_d, top)
    table = SkipTable.scaled(top) if top > 0 else SkipTable(())
    policy = ReusePolicy(
        threshold=threshold,
        table=table,
        recompose_min=base.recompose_min,
        recompose_skip=min(base.recompose_skip, top * 0.5) if top else 0.0,
        keep_border=base.keep_border,
        keep_frames=base.keep_frames,
        escalation=base.escalation,
        min_skip=base.min_skip,
        max_attempts=base.max_attempts,
        harvest=base.harvest,
        eta=base.eta,
    )
    return policy, cal
