from __future__ import annotations

import math

import pytest

from edge_agent.backends.base import Confidence
from edge_agent.context import RequestContext
from edge_agent.policy import Draft, ThresholdPolicy
from edge_agent.request import InferenceRequest
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
