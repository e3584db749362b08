"""The per-request quality target: ``edgeroute.quality_target`` in the body or the
``x-edgeroute-quality-target`` header, through the official ``openai`` client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from edge_agent.app import create_app
from edge_agent.backends.llamacpp import LlamaCppBackend
from edge_agent.serving import BackgroundAgent
from shared.config import EdgeSettings, TenantConfig
from tests.edge_agent.conftest import SMOLLM

QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Name a primary colour."}]
KEY = "sk-tenant-strict"


@pytest.fixture(scope="module")
def agent(
    smollm_backend: LlamaCppBackend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackgroundAgent]:
    """Threshold 0: only a quality target can make a draft escalate; the tenant asks for 0.6."""
    settings = EdgeSettings(
        home=tmp_path_factory.mktemp("edge"),
        confidence_threshold=0.0,
        draft_tokens=4,
        tenants=[TenantConfig(name="strict", api_key=KEY, quality_target=0.6)],
    )
    running = BackgroundAgent(create_app(settings, smollm_backend, owns_backend=False)).start()
    yield running
    running.stop()


def _client(agent: BackgroundAgent) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{agent.base_url}/v1", api_key=KEY, max_retries=0, timeout=120)


def _policy_bar(completion: Any) -> float:
    trace = (completion.model_extra or {})["edgeroute"]["trace"]
    [policy] = [s for s in trace if s["stage"] == "policy"]
    return float(policy["detail"]["threshold"])


def test_body_target_reaches_the_policy(agent: BackgroundAgent) -> None:
    completion = _client(agent).chat.completions.create(
        model=SMOLLM, messages=QUESTION, max_tokens=4, extra_body={"edgeroute": {"quality_target": 0.97}}
    )
    assert _policy_bar(completion) == pytest.approx(0.97)


def test_header_target_beats_body_and_tenant(agent: BackgroundAgent) -> None:
    completion = _client(agent).chat.completions.create(
        model=SMOLLM,
        messages=QUESTION,
        max_tokens=4,
        extra_body={"edgeroute": {"quality_target": 0.97}},
        extra_headers={"x-edgeroute-quality-target": "0.91"},
    )
    assert _policy_bar(completion) == pytest.approx(0.91)


def test_without_a_request_target_the_tenant_target_applies(agent: BackgroundAgent) -> None:
    completion = _client(agent).chat.completions.create(model=SMOLLM, messages=QUESTION, max_tokens=4)
    assert _policy_bar(completion) == pytest.approx(0.6)


@pytest.mark.parametrize("value", [0, -0.1, 1.01, "0.9", True])
def test_bad_body_target_is_a_400(agent: BackgroundAgent, value: object) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        _client(agent).chat.completions.create(
            model=SMOLLM, messages=QUESTION, max_tokens=4, extra_body={"edgeroute": {"quality_target": value}}
        )
    assert info.value.status_code == 400
    err = info.value.body
    assert isinstance(err, dict) and err["param"] == "edgeroute.quality_target"
    assert err["type"] == "invalid_request_error"


@pytest.mark.parametrize("value", ["0", "1.5", "nan", "high", ""])
def test_bad_header_target_is_a_400(agent: BackgroundAgent, value: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        _client(agent).chat.completions.create(
            model=SMOLLM, messages=QUESTION, max_tokens=4, extra_headers={"x-edgeroute-quality-target": value}
        )
    err = info.value.body
    assert isinstance(err, dict) and err["param"] == "x-edgeroute-quality-target"
    assert "(0, 1]" in err["message"]
