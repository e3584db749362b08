"""The edge's classification and the caller's quality target reach a real hub process, which picks
the tier from them: the official ``openai`` client → agent (SmolLM2, calibrated policy) → CURVE
link → ``cloud-hub serve`` with the tiers the shipped threshold table was calibrated over (open
model, fine-tuned and frontier, all echo backends)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from edge_agent.assemble import build_policy
from edge_agent.backends.llamacpp import LlamaCppBackend
from edge_agent.serving import BackgroundAgent
from tests.cloud_hub.helpers import HubProcess
from tests.edge_agent.live import edge_settings, hub_process, linked_agent

MATH = "A farmer has 17 sheep and buys 3 times as many goats. How many animals does he have now?"
OSS_COST = {"usd_per_1k_prompt": 0.0001, "usd_per_1k_completion": 0.0002}
FINETUNED_COST = {"usd_per_1k_prompt": 0.0006, "usd_per_1k_completion": 0.0006}
FRONTIER_COST = {"usd_per_1k_prompt": 0.0025, "usd_per_1k_completion": 0.01}
HUB_ROUTES = ("hub_oss", "hub_finetuned", "frontier")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    models: list[dict[str, object]] = [
        {"name": "oss-echo", "backend": "echo", "tier": "oss", "cost": OSS_COST},
        {"name": "finetuned-echo", "backend": "echo", "tier": "finetuned", "cost": FINETUNED_COST},
        {"name": "frontier-echo", "backend": "echo", "tier": "frontier", "cost": FRONTIER_COST},
    ]
    with hub_process(tmp_path_factory.mktemp("tiers"), models, "oss-echo") as process:
        yield process


@pytest.fixture(scope="module")
def agent(hub: HubProcess, smollm_backend: LlamaCppBackend, models_dir: Path) -> Iterator[BackgroundAgent]:
    settings = edge_settings(hub, models_dir=models_dir, draft_tokens=6, escalation_policy="calibrated")
    with linked_agent(settings, smollm_backend, build_policy(settings)) as running:
        yield running


def _ask(agent: BackgroundAgent, **kwargs: Any) -> tuple[str, list[dict[str, Any]]]:
    client = openai.OpenAI(base_url=f"{agent.base_url}/v1", api_key="unused", max_retries=0, timeout=60)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": MATH}], max_tokens=8, temperature=0, **kwargs
    )
    info = (raw.parse().model_extra or {})["edgeroute"]
    return raw.headers["x-edgeroute-route"], info["trace"]


def _hub_steps(trace: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The hub's own steps: those between the edge's policy step and its ``hub`` reply step."""
    edge_policy = next(i for i, s in enumerate(trace) if s["stage"] == "policy")
    return {s["stage"]: s for s in trace[edge_policy + 1 :] if s["decision"] not in ("answer", "reply")}


def test_classification_and_body_target_choose_the_tier(agent: BackgroundAgent) -> None:
    route, trace = _ask(agent, extra_body={"edgeroute": {"quality_target": 1.0}})
    edge_policy = next(s for s in trace if s["stage"] == "policy")
    assert edge_policy["decision"] == "escalate" and edge_policy["detail"]["task"] == "math"
    hub = _hub_steps(trace)
    # the hub classified nothing itself: this is the edge's classification, sent in the Escalate
    assert hub["classify"]["reason"].startswith("math/")
    assert hub["policy"]["detail"]["target"] == 1.0
    for r in HUB_ROUTES:
        assert hub[r]["detail"]["p_success"] == edge_policy["detail"][f"p_{r}"]
    # the hub's calibrated rule: the candidate with the highest p - lambda * cost wins
    assert hub["policy"]["detail"]["rule"] == "calibrated"
    best = max(HUB_ROUTES, key=lambda r: float(hub[r]["detail"]["utility"]))
    assert route == best and hub[best]["decision"] == "chosen"


def test_header_target_reaches_the_hub(agent: BackgroundAgent) -> None:
    _, trace = _ask(agent, extra_headers={"x-edgeroute-quality-target": "0.99"})
    edge_policy = next(s for s in trace if s["stage"] == "policy")
    assert edge_policy["detail"]["target"] == 0.99 and edge_policy["decision"] == "escalate"
    assert _hub_steps(trace)["policy"]["detail"]["target"] == 0.99
