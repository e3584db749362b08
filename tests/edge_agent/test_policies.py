"""Both escalation policies on real inputs: ``ThresholdPolicy`` on draft confidences, and
``CalibratedPolicy`` with the shipped routing heads (the installed embedding model)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from edge_agent.assemble import build_policy
from edge_agent.backends.base import Confidence
from edge_agent.policies import CalibratedPolicy, ThresholdPolicy
from edge_agent.request import Draft, InferenceRequest
from edge_agent.tenancy import RequestContext
from shared.config import EdgeSettings
from shared.wire import ChatMessage, SamplingParams


def _req(text: str = "", target: float | None = None) -> InferenceRequest:
    return InferenceRequest(
        ctx=RequestContext(request_id="r1", quality_target=target),
        model="auto",
        messages=(ChatMessage(role="user", content=text),) if text else (),
        params=SamplingParams(max_tokens=128),
    )


def _draft(*probs: float) -> Draft:
    return Draft("x", Confidence([math.log(p) for p in probs]), finished=False)


def _finished(prob: float) -> Draft:
    return Draft("The answer is 18.", Confidence([math.log(prob)] * 8), finished=True)


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
    assert policy.decide(_req(target=0.9), _draft(0.8)).escalate


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


def test_threshold_policy_never_decides_before_the_draft() -> None:
    assert ThresholdPolicy(0.75).before_draft(_req("What is TCP?")) is None


def test_threshold_stays_the_default(models_dir: Path) -> None:
    assert build_policy(EdgeSettings(models_dir=models_dir)) is None


def test_calibrated_policy_decides_from_confidence_and_target(models_dir: Path) -> None:
    policy = build_policy(EdgeSettings(models_dir=models_dir, escalation_policy="calibrated"))
    assert isinstance(policy, CalibratedPolicy)
    question = (
        "Janet's ducks lay 16 eggs a day. She eats three and bakes with four. What does she earn at $2?"
    )
    sure = policy.decide(_req(question), _finished(0.99))
    unsure = policy.decide(_req(question), _finished(0.05))
    assert sure.detail["policy"] == "calibrated" and sure.detail["task"] == "math"
    assert float(unsure.detail["p_edge"] or 0) < float(sure.detail["p_edge"] or 0)
    assert unsure.escalate or not sure.escalate
    strict = policy.decide(_req(question, target=1.0), _finished(0.9))
    loose = policy.decide(_req(question, target=0.5), _finished(0.9))
    assert strict.escalate or not loose.escalate  # a higher target never escalates less


def test_before_draft_escalates_only_when_no_draft_could_keep_it_local(models_dir: Path) -> None:
    policy = build_policy(EdgeSettings(models_dir=models_dir, escalation_policy="calibrated"))
    assert isinstance(policy, CalibratedPolicy)
    question = (
        "Which gas makes up most of Earth's atmosphere?\nA. oxygen\nB. nitrogen\nC. argon\nD. carbon dioxide"
    )
    for target in (0.5, 0.8, 0.95, 1.0):
        req = _req(question, target=target)
        early = policy.before_draft(req)
        best = policy.decide(req, _finished(policy.best_draft_confidence))
        # the early call is exactly the decision the best plausible draft would get
        assert (early is not None) == best.escalate
        if early is not None:
            assert early.escalate and early.detail["pre_draft"] is True
            assert early.classification is not None
            # and a less confident draft would escalate too, so drafting could not have helped
            assert policy.decide(req, _finished(0.3)).escalate
