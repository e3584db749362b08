"""The reuse policy: which cached work a request may build on, and how much of it.

Cheapest first:

1. ``exact``: a cached asset of the same prompt as it is, only under ``reuse="exact_ok"`` and
   never one this user already received;
2. ``variation``: resume denoising from a cached intermediate latent of the most similar prompt
   with fresh noise; the share of steps skipped comes from ``SkipTable`` (more similar, more
   skipped);
3. ``recomposition``: for a related but less similar prompt, keep a region of the cached result
   (an image's border, where backgrounds sit; a video's first frames, its keyframes) and
   regenerate the rest with a mask, skipping fewer steps;
4. ``fresh``: from noise; its latents are harvested for the requests after it.

The variation guarantee: a returned asset must be at least ``threshold`` away (``features``)
from its source and from everything this user received. An attempt that falls short runs again
with ``escalation`` less of the schedule skipped (more fresh noise, more steps), and below
``min_skip`` the request goes fresh. ``threshold`` and the table's top row are calibrated per
model (``calibrate.py``); the lower rows step down for prompt adherence, which only real weights
and a CLIP score can calibrate.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from cloud_hub.images.base import F32, Latent
from shared.images import ReuseKind, ReuseMode

# similarity → share of steps a variation skips, top row calibrated, the rest in proportion
DEFAULT_TABLE: tuple[tuple[float, float], ...] = ((0.80, 0.1), (0.85, 0.2), (0.90, 0.3), (0.97, 0.4))
# the lower rows as shares of the calibrated top row (NIRVANA's 10–50 % range, stepped down)
ROW_SHARES = (0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True, slots=True)
class SkipTable:
    rows: tuple[tuple[float, float], ...] = DEFAULT_TABLE

    def __post_init__(self) -> None:
        sims = [r[0] for r in self.rows]
        skips = [r[1] for r in self.rows]
        if sims != sorted(sims) or skips != sorted(skips):
            raise ValueError("a skip table must be monotone: more similar never skips less")
        if any(not 0.0 <= s < 1.0 for s in skips):
            raise ValueError("skip shares lie in [0, 1)")

    @property
    def min_similarity(self) -> float:
        return self.rows[0][0] if self.rows else 1.0

    def skip(self, similarity: float) -> float:
        share = 0.0
        for sim, skip in self.rows:
            if similarity >= sim:
                share = skip
        return share

    @classmethod
    def scaled(cls, top_skip: float, sims: tuple[float, ...] = (0.80, 0.85, 0.90, 0.97)) -> SkipTable:
        return cls(tuple((s, round(top_skip * w, 3)) for s, w in zip(sims, ROW_SHARES, strict=True)))


@dataclass(frozen=True, slots=True)
class Plan:
    kind: ReuseKind
    source_id: str = ""
    similarity: float = 0.0
    skip: float = 0.0  # share of the schedule skipped

    def start(self, steps: int) -> int:
        return min(round(self.skip * steps), steps - 1)


@dataclass(frozen=True, slots=True)
class ReusePolicy:
    threshold: float = 0.04  # variation distance (thumbnail MAD); recalibrate per model
    table: SkipTable = field(default_factory=SkipTable)
    recompose_min: float = 0.65  # related prompts: [recompose_min, table.min_similarity)
    recompose_skip: float = 0.1
    keep_border: float = 0.25  # image recomposition keeps this share of each side
    keep_frames: float = 0.5  # video recomposition keeps this share of the latent frames
    escalation: float = 0.1
    min_skip: float = 0.05
    max_attempts: int = 3
    harvest: tuple[float, ...] = (0.2, 0.4, 0.6, 1.0)  # shares of the schedule kept as latents
    eta: float = 1.0  # DDIM noise in resumed steps: more fresh noise per skipped step

    def harvest_steps(self, steps: int, start: int = 0) -> tuple[int, ...]:
        wanted = {max(1, min(steps, round(h * steps))) for h in self.harvest}
        return tuple(sorted(s for s in wanted if s > start))

    def plan(self, mode: ReuseMode, best: tuple[str, float] | None) -> Plan:
        """What to try first, given the most similar usable cached asset (or none)."""
        if mode == "fresh" or best is None:
            return Plan("fresh")
        source_id, sim = best
        skip = self.table.skip(sim)
        if skip >= self.min_skip:
            return Plan("variation", source_id, sim, skip)
        if sim >= self.recompose_min and self.recompose_skip >= self.min_skip:
            return Plan("recomposition", source_id, sim, self.recompose_skip)
        return Plan("fresh", similarity=sim)

    def escalate(self, plan: Plan) -> Plan:
        """The next, stronger attempt after one fell short of the threshold."""
        if plan.kind == "fresh":
            return plan
        weaker = round(plan.skip - self.escalation, 6)
        if weaker < self.min_skip:
            return Plan("fresh", similarity=plan.similarity)
        return replace(plan, skip=weaker)

    def keep_mask(self, latent_shape: tuple[int, ...]) -> F32:
        """1 where recomposition keeps the cached latent: an image's border, a video's first frames."""
        if len(latent_shape) == 5:  # B, C, T, H, W
            frames = latent_shape[2]
            kept = max(1, round(self.keep_frames * frames)) if frames > 1 else 0
            mask = np.zeros((1, 1, frames, 1, 1), dtype=np.float32)
            mask[:, :, :kept] = 1.0
            return mask
        h, w = latent_shape[-2:]
        bh, bw = max(1, round(self.keep_border * h)), max(1, round(self.keep_border * w))
        mask = np.ones((1, 1, h, w), dtype=np.float32)
        mask[:, :, bh : h - bh, bw : w - bw] = 0.0
        return mask

    def save(self, path: Path, **provenance: Any) -> None:
        body = asdict(self) | {"table": [list(r) for r in self.table.rows], "provenance": provenance}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(body, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> ReusePolicy:
        body = json.loads(path.read_text(encoding="utf-8"))
        body.pop("provenance", None)
        table = SkipTable(tuple((float(a), float(b)) for a, b in body.pop("table")))
        body["harvest"] = tuple(body["harvest"])
        return cls(table=table, **body)


def pick_latent(latents: tuple[Latent, ...], level: float) -> Latent | None:
    """The noisiest cached latent strictly cleaner than ``level``: it carries the most of the
    source's trajectory while still leaving room for fresh noise (one at exactly ``level`` would
    get none, and a deterministic sampler would redraw the source itself)."""
    usable = [lt for lt in latents if lt.level < level - 1e-6]
    return max(usable, key=lambda lt: lt.level, default=None)


def clean_latent(latents: tuple[Latent, ...]) -> Latent | None:
    """The least noisy latent (the finished one when it was harvested)."""
    return min(latents, key=lambda lt: lt.level, default=None)
