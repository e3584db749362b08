"""Tenant budgets under concurrency, through a real hub process (echo backend, priced per token)
and a real agent over HTTP: 100 requests at once against a small cap. Reserving each request's
maximum cost before it runs keeps the spend within the cap; the negative control, which checks
the spend and adds each cost afterwards, lets the burst through and overspends. The spend is in
SQLite, so a restarted agent still refuses a tenant whose budget is gone.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from edge_agent.app import create_app, open_budgets
from edge_agent.assemble import build_hub_link
from edge_agent.backends.llamacpp import LlamaCppBackend
from edge_agent.budgets import BudgetLedger, Budgets
from edge_agent.request import InferenceRequest
from edge_agent.serving import BackgroundAgent
from edge_agent.tenancy import RequestContext
from shared.config import AdmissionSettings, CostModel, EdgeSettings, TenantConfig
from shared.wire import ChatMessage, SamplingParams
from tests.cloud_hub.helpers import HubProcess
from tests.edge_agent.live import edge_settings, hub_process, wait_hub

HUB_COST = {"usd_per_1k_prompt": 0.5, "usd_per_1k_completion": 1.5}
KEY = "sk-budget-acme"
BUDGET = 0.25
REQUESTS = 100
QUESTION = "alpha beta gamma delta"
BODY = {"model": "hub", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 8}
# the request each of the burst's is, as the pipeline sees it
PROBE = InferenceRequest(
    ctx=RequestContext("probe", tenant="acme"),
    model="hub",
    messages=(ChatMessage("user", QUESTION),),
    params=SamplingParams(max_tokens=8),
    force="hub",
)


class CheckThenSpend(Budgets):
    """The negative control: a request reserves nothing, so it is admitted while the spend so far
    is under the cap, and its cost is only added when it ends."""

    def max_cost(self, req: InferenceRequest, may_escalate: bool) -> float:
        return 0.0


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    models: list[dict[str, object]] = [{"name": "echo", "backend": "echo", "tier": "oss", "cost": HUB_COST}]
    with hub_process(tmp_path_factory.mktemp("budget-link"), models, "echo") as process:
        yield process


def _settings(hub: HubProcess, home: Path, budget: float = BUDGET) -> EdgeSettings:
    """An agent home of its own (its own budget file) with the edge key the hub enrolled."""
    if not (home / "keys").exists():
        shutil.copytree(hub.home.parent / "edge" / "keys", home / "keys")
    return edge_settings(
        hub,
        home=home,
        tenants=[TenantConfig(name="acme", api_key=SecretStr(KEY), budget_usd=budget)],
        hub_price_ceiling=CostModel(**HUB_COST),
        admission=AdmissionSettings(hub_in_flight=2 * REQUESTS),  # only the budget may refuse here
    )


def _start(
    settings: EdgeSettings, backend: LlamaCppBackend, budgets: Budgets | None = None
) -> BackgroundAgent:
    link = build_hub_link(settings)
    app = create_app(settings, backend, hub=link, owns_backend=False, budgets=budgets)
    agent = BackgroundAgent(app).start()
    wait_hub(agent.base_url)
    return agent


def _one_request_max(settings: EdgeSettings) -> float:
    return open_budgets(settings, BudgetLedger(":memory:")).max_cost(PROBE, may_escalate=True)


async def _burst(base_url: str) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=base_url, timeout=120, headers=headers) as client:
        return list(
            await asyncio.gather(*(client.post("/v1/chat/completions", json=BODY) for _ in range(REQUESTS)))
        )


def _spent(home: Path) -> float:
    ledger = BudgetLedger(home / "budgets.db")
    try:
        spent, held = ledger.usage("acme", 24 * 3600.0)
    finally:
        ledger.close()
    assert held == 0.0  # every request settled
    return spent


def _tally(responses: list[httpx.Response]) -> tuple[list[dict[str, Any]], list[httpx.Response]]:
    answered = [r.json() for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(answered) + len(refused) == REQUESTS, {r.status_code for r in responses}
    for r in refused:
        assert r.json()["error"]["code"] == "budget_exceeded" and int(r.headers["Retry-After"]) >= 1
    return answered, refused


def test_reserving_the_maximum_cost_keeps_100_concurrent_requests_within_the_budget(
    hub: HubProcess, smollm_backend: LlamaCppBackend, tmp_path: Path
) -> None:
    settings = _settings(hub, tmp_path / "edge")
    agent = _start(settings, smollm_backend)
    try:
        answered, refused = _tally(asyncio.run(_burst(agent.base_url)))
    finally:
        agent.stop()
    spent = _spent(settings.home)
    charged = sum(a["edgeroute"]["cost_usd"] for a in answered)
    one_request = _one_request_max(settings)
    assert answered and refused
    assert spent == pytest.approx(charged)  # the ledger holds what the answers cost
    assert spent <= BUDGET + one_request
    assert spent <= BUDGET  # stricter: no answer cost more than its reservation
    print(
        f"\nreserved: {len(answered)} answered, {len(refused)} refused; spent ${spent:.4f} of "
        f"${BUDGET} (overshoot ${max(0.0, spent - BUDGET):.4f}; one request may cost ${one_request:.4f})"
    )


def test_check_then_spend_overspends(
    hub: HubProcess, smollm_backend: LlamaCppBackend, tmp_path: Path
) -> None:
    settings = _settings(hub, tmp_path / "edge")
    naive = CheckThenSpend(
        settings.tenants,
        BudgetLedger(settings.home / "budgets.db"),
        local_cost=settings.local_model.cost,
        hub_price_ceiling=settings.hub_price_ceiling,
        draft_tokens=settings.draft_tokens,
        hub_timeout_s=settings.hub_timeout_s,
    )
    agent = _start(settings, smollm_backend, naive)
    try:
        answered, _ = _tally(asyncio.run(_burst(agent.base_url)))
    finally:
        agent.stop()
        naive.close()
    spent = _spent(settings.home)
    one_request = _one_request_max(settings)
    print(f"\ncheck-then-spend: {len(answered)} answered, spent ${spent:.4f} of ${BUDGET}")
    assert spent > BUDGET + one_request


def test_spend_survives_a_restart(hub: HubProcess, smollm_backend: LlamaCppBackend, tmp_path: Path) -> None:
    """A cap that admits one request: after it, a restarted agent on the same home refuses the next."""
    settings = _settings(hub, tmp_path / "edge", budget=_one_request_max(_settings(hub, tmp_path / "edge")))
    headers = {"Authorization": f"Bearer {KEY}"}
    url = "/v1/chat/completions"
    agent = _start(settings, smollm_backend)
    try:
        first = httpx.post(f"{agent.base_url}{url}", json=BODY, headers=headers, timeout=60)
    finally:
        agent.stop()
    assert first.status_code == 200, first.text
    cost = first.json()["edgeroute"]["cost_usd"]
    assert cost > 0.0 and _spent(settings.home) == pytest.approx(cost)
    restarted = _start(settings, smollm_backend)
    try:
        again = httpx.post(f"{restarted.base_url}{url}", json=BODY, headers=headers, timeout=60)
    finally:
        restarted.stop()
    assert again.status_code == 429, again.text
    error = again.json()["error"]
    assert error["code"] == "budget_exceeded" and "left" in error["message"]
    assert int(again.headers["Retry-After"]) > 1  # the window's end, not "soon"
