"""A table calibrated over all four tiers still drives the hub's tier choice: the hub picks among
its own tiers (oss, finetuned, frontier) from the edge's four-tier classification."""

from __future__ import annotations

import time

import pytest

from cloud_hub.backends.echo import EchoBackend
from cloud_hub.registry import ModelRegistry, RegisteredModel
from cloud_hub.tiers import TierChooser, lines_up
from shared.config import HubSettings
from shared.routing.calibration import OperatingPoint, ThresholdTable
from shared.taxonomy import Tier
from shared.wire import ChatMessage, Classification, Escalate, SamplingParams

OPTIONS = ("edge", "oss", "finetuned", "frontier")


def _table(lam: float) -> ThresholdTable:
    points = (OperatingPoint(0.95, lam, 0.85, 0.003, True),)
    return ThresholdTable(OPTIONS, "frontier", 0.9, points, option_costs=(2e-7, 3e-5, 4e-4, 6e-3))


def _registry() -> ModelRegistry:
    # the embedded deployment's hub entries and prices, each answered by the echo backend
    entries = HubSettings().models
    assert {e.tier for e in entries} == {Tier.OSS, Tier.FINETUNED, Tier.FRONTIER}
    return ModelRegistry([RegisteredModel(e, EchoBackend()) for e in entries], default_model=entries[0].name)


def _req(success: dict[str, float]) -> Escalate:
    return Escalate(
        request_id="r",
        model="auto",
        messages=[ChatMessage("user", "what is seven times six")],
        params=SamplingParams(max_tokens=64),
        deadline=time.time() + 5,
        classification=Classification(task="math", domain="math", success=success),
    )


@pytest.mark.parametrize(
    ("success", "tier"),
    [
        ({"edge": 0.1, "oss": 0.1, "finetuned": 0.2, "frontier": 0.95}, Tier.FRONTIER),
        ({"edge": 0.3, "oss": 0.2, "finetuned": 0.9, "frontier": 0.92}, Tier.FINETUNED),
        ({"edge": 0.5, "oss": 0.9, "finetuned": 0.9, "frontier": 0.92}, Tier.OSS),
    ],
)
def test_hub_picks_its_tier_from_the_four_tier_classification(success: dict[str, float], tier: Tier) -> None:
    chooser = TierChooser(_registry(), thresholds=_table(lam=0.1))
    plan = chooser.plan(_req(success))
    assert plan.targets[0].entry.tier is tier, plan.reason
    # the finetuned tier is predicted from its own head now, not copied from oss
    by_tier = {m.entry.tier: plan.predicted[m.entry.name] for m in plan.targets}
    assert by_tier == {t: success[t.value] for t in (Tier.OSS, Tier.FINETUNED, Tier.FRONTIER)}
    assert {m.entry.tier for m in plan.targets} == {Tier.OSS, Tier.FINETUNED, Tier.FRONTIER}
    stages = [s.stage for s in plan.steps if s.stage not in ("classify", "policy")]
    assert stages == ["hub_oss", "hub_finetuned", "frontier"]  # never the edge: the hub cannot serve it


def test_a_zero_lambda_buys_the_best_prediction() -> None:
    plan = TierChooser(_registry(), thresholds=_table(lam=0.0)).plan(
        _req({"edge": 0.5, "oss": 0.9, "finetuned": 0.93, "frontier": 0.92})
    )
    assert plan.targets[0].entry.tier is Tier.FINETUNED


def test_a_table_over_other_tiers_is_not_used() -> None:
    """A hub without the fine-tuned tier the table counted on falls back to cheapest adequate."""
    entries = [e for e in HubSettings().models if e.tier is not Tier.FINETUNED]
    registry = ModelRegistry(
        [RegisteredModel(e, EchoBackend()) for e in entries], default_model=entries[0].name
    )
    table = _table(lam=0.1)
    assert lines_up(table, [Tier.OSS, Tier.FINETUNED, Tier.FRONTIER])
    assert not lines_up(table, [e.tier for e in entries])
    plan = TierChooser(registry, thresholds=table).plan(
        _req({"edge": 0.1, "oss": 0.5, "finetuned": 0.9, "frontier": 0.92})
    )
    policy = next(s for s in plan.steps if s.stage == "policy")
    assert policy.detail["rule"] == "cheapest_adequate"
    assert plan.targets[0].entry.tier is Tier.FRONTIER  # 0.5 is not within 0.95 of 0.92
