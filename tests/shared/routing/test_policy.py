from __future__ import annotations

import pytest
from pydantic import SecretStr

from shared.config import CostModel, TenantConfig
from shared.routing.calibration import OperatingPoint, ThresholdTable
from shared.routing.policy import Decision, QualityTargets, RouteOption, RoutingPolicy, refine_with_confidence
from shared.taxonomy import Route
from shared.wire import Classification, TraceStep

EDGE = RouteOption(Route.EDGE_LOCAL, "qwen-0.5b", CostModel(joules_per_token=0.05))
OSS = RouteOption(Route.HUB_OSS, "qwen-1.5b", CostModel(usd_per_gpu_second=0.0006), seconds_per_token=0.03)
FRONTIER = RouteOption(Route.FRONTIER, "gpt-4", CostModel(usd_per_1k_prompt=0.01, usd_per_1k_completion=0.03))


def _policy(**kw: object) -> RoutingPolicy:
    return RoutingPolicy([FRONTIER, EDGE, OSS], **kw)  # type: ignore[arg-type]


def test_costs_are_ordered_and_edge_is_never_free() -> None:
    costs = [o.estimate(200, 256) for o in (EDGE, OSS, FRONTIER)]
    assert 0 < costs[0] < costs[1] < costs[2]
    with pytest.raises(ValueError, match="zero estimated cost"):
        RouteOption(Route.EDGE_LOCAL, "free", CostModel())


def test_picks_cheapest_adequate_route() -> None:
    p = _policy()

    def decide(edge: float, oss: float, frontier: float) -> Decision:
        success = {Route.EDGE_LOCAL: edge, Route.HUB_OSS: oss, Route.FRONTIER: frontier}
        return p.decide(success, prompt_tokens=50, max_tokens=100)

    d = decide(0.9, 0.92, 0.93)
    assert d.route is Route.EDGE_LOCAL and d.rule == "cheapest_adequate"
    d = decide(0.3, 0.86, 0.9)
    assert d.route is Route.HUB_OSS
    d = decide(0.3, 0.5, 0.9)
    assert d.route is Route.FRONTIER
    assert d.fallbacks == [Route.HUB_OSS, Route.EDGE_LOCAL]


def test_unavailable_routes_are_skipped() -> None:
    p = _policy()
    success = {Route.EDGE_LOCAL: 0.3, Route.HUB_OSS: 0.5, Route.FRONTIER: 0.9}
    d = p.decide(success, prompt_tokens=50, max_tokens=100, unavailable={Route.FRONTIER})
    assert d.route is Route.HUB_OSS
    with pytest.raises(LookupError):
        p.decide(success, prompt_tokens=5, max_tokens=5, unavailable=set(Route))
    with pytest.raises(KeyError):
        p.decide({Route.EDGE_LOCAL: 0.3}, prompt_tokens=5, max_tokens=5)


def test_calibrated_rule_trades_quality_for_cost() -> None:
    def table(lam: float) -> ThresholdTable:
        return ThresholdTable(("e", "o", "f"), "f", 0.9, (OperatingPoint(0.95, lam, 0.86, 1.0, True),))

    success = {Route.EDGE_LOCAL: 0.6, Route.HUB_OSS: 0.75, Route.FRONTIER: 0.9}
    cheap_quality = _policy(thresholds=table(0.0)).decide(success, prompt_tokens=50, max_tokens=100)
    assert cheap_quality.route is Route.FRONTIER  # lambda 0: best predicted quality
    pricey = _policy(thresholds=table(10.0)).decide(success, prompt_tokens=50, max_tokens=100)
    assert pricey.route is Route.EDGE_LOCAL and pricey.rule == "calibrated"


def test_quality_target_precedence() -> None:
    tenants = [
        TenantConfig(
            name="acme", api_key=SecretStr("k"), quality_target=0.9, domain_quality_targets={"medicine": 0.99}
        ),
        TenantConfig(name="lab", api_key=SecretStr("k")),
    ]
    t = QualityTargets.from_tenants(tenants, default=0.8)
    assert t.target("acme", "medicine") == 0.99
    assert t.target("acme", "code") == 0.9
    assert t.target("lab", "code") == 0.8
    assert t.target("acme", "medicine", override=0.5) == 0.5
    with pytest.raises(ValueError):
        t.target(override=1.5)
    # a higher target can only move the choice to a costlier route
    p = _policy(targets=t)
    success = {Route.EDGE_LOCAL: 0.85, Route.HUB_OSS: 0.9, Route.FRONTIER: 0.95}
    assert p.decide(success, prompt_tokens=10, max_tokens=10, tenant="lab").route is Route.EDGE_LOCAL
    strict = p.decide(success, prompt_tokens=10, max_tokens=10, tenant="acme", domain="medicine")
    assert strict.route is Route.FRONTIER


def test_decision_explains_itself_as_trace_steps() -> None:
    cls = Classification(task="math", domain="math", success={"edge": 0.3})
    d = _policy().decide(
        {Route.EDGE_LOCAL: 0.3, Route.HUB_OSS: 0.5, Route.FRONTIER: 0.9},
        prompt_tokens=50,
        max_tokens=100,
        classification=cls,
    )
    steps = d.to_trace_steps()
    assert all(isinstance(s, TraceStep) for s in steps)
    assert steps[0].stage == "classify" and steps[1].stage == "policy"
    by_stage = {s.stage: s for s in steps[2:]}
    assert by_stage["frontier"].decision == "chosen"
    assert by_stage["edge_local"].decision == "skip"
    assert by_stage["edge_local"].detail["p_success"] == 0.3
    assert float(by_stage["hub_oss"].detail["cost_usd"] or 0) > 0


def test_local_confidence_moves_the_estimate() -> None:
    assert refine_with_confidence(0.6, 0.75, pivot=0.75) == pytest.approx(0.6)
    assert refine_with_confidence(0.6, 0.95) > 0.6 > refine_with_confidence(0.6, 0.3)
    assert 0.0 < refine_with_confidence(0.0, 0.0) < refine_with_confidence(1.0, 1.0) < 1.0
