from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from shared.config import EdgeSettings, TenantConfig
from shared.embedding import OnnxEmbedder
from shared.routing.escalation import CascadeJudge
from shared.taxonomy import Route

PROMPTS = [
    "Janet's ducks lay 16 eggs a day. She eats three and bakes with four. What does she make at $2 each?",
    "Write a python function that checks whether a string is a palindrome.",
    "What is the capital of Australia?",
    "Tell me a fun fact about octopuses.",
    "Which gas makes up most of Earth's atmosphere?\nA. Oxygen\nB. Nitrogen\nC. Argon\nD. CO2",
]


@pytest.fixture(scope="module")
def judge(models_dir: Path) -> Iterator[CascadeJudge]:
    settings = EdgeSettings(
        models_dir=models_dir,
        tenants=[TenantConfig(name="strict", api_key=SecretStr("k"), quality_target=1.0)],
    )
    with OnnxEmbedder(models_dir / "minilm-l6-v2-onnx") as emb:
        yield CascadeJudge.from_settings(settings, emb)


def test_confidence_moves_the_decision_the_right_way(judge: CascadeJudge) -> None:
    for prompt in PROMPTS:
        sure = judge.judge(prompt, 0.99)
        unsure = judge.judge(prompt, 0.05)
        assert float(sure.detail["p_edge"] or 0) > float(unsure.detail["p_edge"] or 0)
        assert not (sure.escalate and not unsure.escalate), prompt  # more confidence never escalates more
    assert any(judge.judge(p, 0.05).escalate for p in PROMPTS)
    assert not all(judge.judge(p, 0.99).escalate for p in PROMPTS)


def test_higher_targets_escalate_at_least_as_often(judge: CascadeJudge) -> None:
    for conf in (0.5, 0.8, 0.95):
        low = sum(judge.judge(p, conf, quality_target=0.8).escalate for p in PROMPTS)
        high = sum(judge.judge(p, conf, tenant="strict").escalate for p in PROMPTS)
        assert high >= low


def test_no_hub_means_local_and_the_trace_explains(judge: CascadeJudge) -> None:
    v = judge.judge(PROMPTS[0], 0.05, hub_available=False)
    assert not v.escalate and v.decision.route is Route.EDGE_LOCAL
    steps = v.decision.to_trace_steps()
    assert steps[0].stage == "classify" and steps[0].reason.startswith("math/")
    unavailable = {s.stage for s in steps if s.decision == "unavailable"}
    assert unavailable == {"hub_oss", "hub_finetuned", "frontier"}
    assert v.detail["task"] == "math" and "p_edge" in v.reason
