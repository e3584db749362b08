"""Metering hub media jobs on a real budget ledger (SQLite) and real admission gates: what a job
reserves, what it settles to, what a refusal leaves behind, and a burst that must not overshoot.
The same through a real hub and edge over HTTP is in ``tests/edge_agent/api/test_images_limits.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from edge_agent.admission import MEDIA, Admission, Gate, Overloaded
from edge_agent.budgets import BudgetExceeded, BudgetLedger, Budgets
from edge_agent.hub_link.errors import HubError, HubRefused, HubTimeout, HubUnavailable
from edge_agent.images.answer import MediaUnavailable
from edge_agent.images.metering import Charge, MediaMeter, MediaPrices, may_have_run
from shared.config import CostModel, EdgeImageSettings, TenantConfig

PRICES = MediaPrices(
    image_usd_per_step=0.001, image_default_steps=8, video_usd_per_step=0.01, video_default_steps=6
)
DAY = 24 * 3600.0


def _budgets(path: Path, cap: float) -> Budgets:
    tenants = [
        TenantConfig(name="acme", api_key=SecretStr("sk-a"), budget_usd=cap, budget_window_s=DAY),
        TenantConfig(name="globex", api_key=SecretStr("sk-g")),
    ]
    return Budgets(
        tenants,
        BudgetLedger(path),
        local_cost=CostModel(),
        hub_price_ceiling=CostModel(),
        draft_tokens=0,
        hub_timeout_s=10,
    )


def test_a_job_costs_at_most_its_assets_times_steps_times_the_step_price() -> None:
    assert PRICES.max_cost("image", 0, 3) == pytest.approx(3 * 8 * 0.001)  # the default steps
    assert PRICES.max_cost("image", 50, 2) == pytest.approx(2 * 50 * 0.001)
    assert PRICES.max_cost("video", 0, 1) == pytest.approx(6 * 0.01)
    cfg = EdgeImageSettings(image_usd_per_step=0.5, image_default_steps=4, video_hold_s=7.0)
    meter = MediaMeter.from_settings(cfg, None, None)
    assert meter.prices.max_cost("image", 0, 1) == 2.0 and meter.video_hold_s == 7.0


def test_only_a_typed_answer_of_the_hub_means_the_job_did_not_run() -> None:
    def wrapped(cause: BaseException) -> MediaUnavailable:
        try:
            raise MediaUnavailable("retry later") from cause
        except MediaUnavailable as exc:
            return exc

    assert not may_have_run(HubRefused("invalid_request", "bad size"))
    assert not may_have_run(wrapped(HubError("overloaded", "the hub is full", retryable=True)))
    assert not may_have_run(wrapped(HubError("backend_error", "the model failed")))
    # no answer: the hub may have rendered it all
    assert may_have_run(wrapped(HubTimeout("no reply in 300 s")))
    assert may_have_run(wrapped(HubUnavailable("the link dropped")))
    assert may_have_run(asyncio.CancelledError())


async def test_a_job_holds_its_maximum_cost_and_settles_to_the_hubs_once(tmp_path: Path) -> None:
    budgets = _budgets(tmp_path / "b.db", cap=1.0)
    gate = Gate(MEDIA, limit=4)
    meter = MediaMeter(PRICES, budgets=budgets, admission=Admission(media=gate))
    charge = await meter.take("acme", "image", 0, 2)
    assert budgets.ledger.usage("acme", DAY) == pytest.approx((0.0, 0.016)) and gate.held == 1
    await charge.settle(0.004)  # a variation ran fewer steps than a fresh picture would
    await charge.settle(0.5)
    await charge.fail(RuntimeError("late"))
    assert budgets.ledger.usage("acme", DAY) == pytest.approx((0.004, 0.0)) and gate.held == 0
    # a job that may have run is charged in full; one the hub refused, nothing
    await (await meter.take("acme", "video", 0, 1)).fail(HubTimeout("no reply"))
    await (await meter.take("acme", "video", 0, 1)).fail(HubRefused("unknown_model", "no video model"))
    assert budgets.ledger.usage("acme", DAY) == pytest.approx((0.064, 0.0))
    # a tenant without a cap holds a place, no budget
    free = await meter.take("globex", "image", 0, 1)
    assert free.open is False and gate.held == 1
    await free.settle(0.008)
    assert budgets.ledger.usage("globex", DAY) == (0.0, 0.0) and gate.held == 0
    budgets.close()


async def test_refusals_leave_no_place_taken_and_nothing_held(tmp_path: Path) -> None:
    budgets = _budgets(tmp_path / "b.db", cap=0.01)
    gate = Gate(MEDIA, limit=1)
    meter = MediaMeter(PRICES, budgets=budgets, admission=Admission(media=gate))
    with pytest.raises(BudgetExceeded):
        await meter.take("acme", "image", 0, 2)  # 0.016 > 0.01
    assert gate.held == 0 and gate.admitted == 0  # the budget refuses before the gate is asked
    held = await meter.take("globex", "image", 0, 1)
    with pytest.raises(Overloaded) as full:
        await meter.take("acme", "image", 0, 1)
    assert full.value.status == 429 and full.value.retry_after_s >= 1
    assert budgets.ledger.usage("acme", DAY) == (0.0, 0.0)  # refused at the gate: its hold is gone
    await held.settle(0.0)
    await (await meter.take("acme", "image", 0, 1)).settle(0.008)  # free again, without a restart
    budgets.close()


async def test_a_burst_of_jobs_never_reserves_past_the_cap(tmp_path: Path) -> None:
    cap = 0.05
    budgets = _budgets(tmp_path / "b.db", cap=cap)
    meter = MediaMeter(PRICES, budgets=budgets, admission=Admission(media=Gate(MEDIA, limit=100)))
    outcomes = await asyncio.gather(
        *(meter.take("acme", "image", 0, 1) for _ in range(20)), return_exceptions=True
    )
    charges = [o for o in outcomes if isinstance(o, Charge)]
    assert len(charges) == 6  # 6 × 0.008 = 0.048 ≤ 0.05 < 7 × 0.008
    assert all(isinstance(o, BudgetExceeded) for o in outcomes if not isinstance(o, Charge))
    await asyncio.gather(*(c.settle(c.amount_usd) for c in charges))
    spent, held = budgets.ledger.usage("acme", DAY)
    assert spent == pytest.approx(0.048) and spent <= cap and held == 0.0
    budgets.close()
