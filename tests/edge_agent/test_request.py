from __future__ import annotations

import math

import pytest
from pydantic import SecretStr

from edge_agent.backends.base import Confidence
from edge_agent.request import (
    DEFAULT_TENANT,
    AuthError,
    Draft,
    InferenceRequest,
    RequestContext,
    Tenancy,
    ThresholdPolicy,
    request_id_from,
)
from shared.config import TenantConfig
from shared.wire import SamplingParams


def _draft(*probs: float) -> Draft:
    return Draft("x", Confidence([math.log(p) for p in probs]), finished=False)


def _req(quality_target: float | None = None) -> InferenceRequest:
    ctx = RequestContext(request_id="r", tenant="t", quality_target=quality_target)
    return InferenceRequest(ctx=ctx, model="auto", messages=(), params=SamplingParams())


def test_mean_probability_against_threshold() -> None:
    policy = ThresholdPolicy(0.75)
    stay = policy.decide(_req(), _draft(0.9, 0.7))  # mean 0.8
    assert not stay.escalate and stay.detail["mean_prob"] == pytest.approx(0.8)
    assert stay.detail["min_prob"] == pytest.approx(0.7)
    go = policy.decide(_req(), _draft(0.9, 0.5))  # mean 0.7
    assert go.escalate and "0.700 < 0.750" in go.reason


def test_tenant_quality_target_raises_the_bar() -> None:
    policy = ThresholdPolicy(0.5)
    assert not policy.decide(_req(), _draft(0.8)).escalate
    assert policy.decide(_req(quality_target=0.9), _draft(0.8)).escalate


def test_empty_draft_is_confident() -> None:
    assert not ThresholdPolicy(0.99).decide(_req(), _draft()).escalate


def test_threshold_must_be_a_probability() -> None:
    with pytest.raises(ValueError):
        ThresholdPolicy(1.5)


def test_confidence_statistics() -> None:
    conf = Confidence([math.log(0.5), math.log(1.0)])
    assert conf.mean_prob == pytest.approx(0.75)
    assert conf.min_prob == pytest.approx(0.5)
    assert conf.probs() == [0.5, 1.0]
    assert conf.count == 2


def test_tenancy_maps_keys_to_tenants() -> None:
    acme = TenantConfig(name="acme", api_key=SecretStr("sk-a"), quality_target=0.9)
    tenancy = Tenancy([acme, TenantConfig(name="beta", api_key=SecretStr("sk-b"))])
    ctx = tenancy.context("r1", "Bearer sk-a")
    assert ctx.tenant == "acme" and ctx.quality_target == 0.9
    assert ctx.tenant_hash and "acme" not in ctx.tenant_hash
    assert tenancy.context("r2", "bearer  sk-b").tenant == "beta"
    for bad in (None, "", "Basic sk-a", "Bearer", "Bearer sk-c"):
        with pytest.raises(AuthError):
            tenancy.context("r3", bad)


def test_without_tenants_everyone_is_the_default_tenant() -> None:
    assert Tenancy([]).context("r", "Bearer anything").tenant == DEFAULT_TENANT


def test_request_ids_are_echoed_only_when_sane() -> None:
    assert request_id_from("abc-123:x") == "abc-123:x"
    for bad in (None, "", "has space", "x" * 200, "new\nline"):
        assert request_id_from(bad).startswith("req-")
