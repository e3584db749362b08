from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cloud_hub.images.base import Latent
from cloud_hub.images.calibrate import calibrate
from cloud_hub.images.diffusers_backend import DiffusersImageBackend
from cloud_hub.images.reuse import Plan, ReusePolicy, SkipTable, clean_latent, pick_latent
from tests.cloud_hub.images.conftest import CALIBRATION_PROMPTS, SIDE, STEPS


def test_the_skip_table_is_monotone_and_read_by_bands() -> None:
    table = SkipTable(((0.8, 0.1), (0.9, 0.3), (0.97, 0.5)))
    assert [table.skip(s) for s in (0.5, 0.8, 0.85, 0.9, 0.99, 1.0)] == [0.0, 0.1, 0.1, 0.3, 0.5, 0.5]
    with pytest.raises(ValueError, match="monotone"):
        SkipTable(((0.8, 0.4), (0.9, 0.2)))
    scaled = SkipTable.scaled(0.4)
    assert scaled.rows[-1] == (0.97, 0.4) and [r[1] for r in scaled.rows] == sorted(r[1] for r in scaled.rows)


def test_plan_cheapest_first_and_escalation() -> None:
    policy = ReusePolicy(table=SkipTable(((0.8, 0.2), (0.97, 0.4))), recompose_min=0.6, recompose_skip=0.1)
    assert policy.plan("fresh", ("a", 1.0)).kind == "fresh"
    assert policy.plan("variation", None).kind == "fresh"
    assert policy.plan("variation", ("a", 0.99)) == Plan("variation", "a", 0.99, 0.4)
    assert policy.plan("variation", ("a", 0.7)) == Plan("recomposition", "a", 0.7, 0.1)
    assert policy.plan("variation", ("a", 0.5)).kind == "fresh"
    # each failed attempt skips 0.1 less; below min_skip it goes fresh
    plan = policy.plan("exact_ok", ("a", 0.99))
    skips = []
    while plan.kind != "fresh":
        skips.append(plan.skip)
        plan = policy.escalate(plan)
    assert skips == [0.4, 0.3, 0.2, 0.1]
    assert Plan("variation", skip=0.5).start(10) == 5 and Plan("variation", skip=0.99).start(10) == 9


def test_keep_masks_for_images_and_videos() -> None:
    policy = ReusePolicy(keep_border=0.25, keep_frames=0.5)
    image = policy.keep_mask((1, 4, 8, 8))
    assert image.shape == (1, 1, 8, 8) and image[0, 0, 0, 0] == 1.0 and image[0, 0, 4, 4] == 0.0
    assert image.sum() == 64 - 16
    video = policy.keep_mask((1, 16, 4, 4, 4))
    assert video.ravel().tolist() == [1.0, 1.0, 0.0, 0.0]


def test_latent_choice_leaves_room_for_fresh_noise() -> None:
    lats = tuple(Latent(s, 10, lvl, np.zeros(1, np.float32)) for s, lvl in ((2, 0.9), (4, 0.6), (10, 0.0)))
    assert pick_latent(lats, 0.9) is not None and pick_latent(lats, 0.9).step == 4  # type: ignore[union-attr]
    assert pick_latent(lats, 0.95).step == 2  # type: ignore[union-attr]
    assert pick_latent(lats, 0.0) is None
    assert clean_latent(lats).step == 10  # type: ignore[union-attr]


def test_policy_round_trips_through_json(tmp_path: Path) -> None:
    policy = ReusePolicy(threshold=0.031, table=SkipTable.scaled(0.45), eta=0.5)
    policy.save(tmp_path / "policy.json", model="tiny-sd-small")
    assert ReusePolicy.load(tmp_path / "policy.json") == policy


def test_calibration_sets_the_threshold_below_independent_pictures(backend: DiffusersImageBackend) -> None:
    policy, cal = calibrate(
        backend, CALIBRATION_PROMPTS, width=SIDE, height=SIDE, steps=STEPS, seeds=3, grid=(0.25, 0.5)
    )
    assert len(cal.fresh_distances) == 2 * 3
    assert policy.threshold == pytest.approx(0.25 * float(np.percentile(cal.fresh_distances, 5)))
    assert 0 < policy.threshold < min(cal.fresh_distances)
    assert policy.table.rows[-1][1] == cal.top_skip
    assert all(cal.pass_rate(s) >= 0.9 for s in (0.25, 0.5) if s <= cal.top_skip)
    strict, strict_cal = calibrate(
        backend,
        CALIBRATION_PROMPTS[:1],
        width=SIDE,
        height=SIDE,
        steps=STEPS,
        seeds=2,
        floor=50.0,
        grid=(0.25,),
    )
    assert strict_cal.top_skip == 0.0 and strict.table.rows == ()  # nothing passes: never vary
    assert strict.plan("variation", ("a", 1.0)).kind == "fresh"
