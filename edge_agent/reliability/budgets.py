"""T33: a tenant's budget holds under 100 concurrent requests.

The tenant is given a budget and fires bursts of 100 mixed requests at once (streams, cache hits,
escalations) until it runs out: the spend must stay within the budget plus one request's
reservation, and nothing may be served once it is exhausted, not even a cache hit or a local
answer. The control fires the same burst from an uncapped tenant, which spends past that budget.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import aiohttp

from edge_agent.api.state import STATE
from edge_agent.reliability.harness import (
    EchoModel,
    EdgeOptions,
    HubAccess,
    chat,
    post_chat,
    post_stream,
    settle,
    start_edge,
    wait_connected,
)
from edge_agent.request import InferenceRequest
from edge_agent.tenancy import RequestContext
from shared.hubproc import HubServer, LinkKeys
from shared.reliability import Report, Result, Size, pick
from shared.wire import ChatMessage, SamplingParams

T33_NAME = "spend within budget under 100 concurrent requests"

# completion tokens only, the same on every route: a request's reservation (its max_tokens at this
# price) is then close to what it really costs, so the burst can run the budget down to nothing
PRICE = {"usd_per_1k_completion": 0.03}
MAX_TOKENS = 8


def _words(tag: str, rng: random.Random) -> str:
    return " ".join([tag, *(f"{rng.getrandbits(20):05x}" for _ in range(MAX_TOKENS - 1))])


async def _t33(size: Size, work: Path, r: Report) -> None:
    budget = 0.01
    key = "sk-capped-0001"
    keys = LinkKeys.make(work / "keys")
    hub = HubServer(keys, models=[{"name": "echo", "backend": "echo", "cost": PRICE}])
    await asyncio.to_thread(hub.start)
    settings = {"hub_price_ceiling": PRICE, "local_model": {"cost": PRICE}, "admission": {"local_queue": 400}}
    tenants = {"capped": key, "free": "sk-free-0002"}
    opts = EdgeOptions(
        tenants=tenants, budgets={"capped": budget}, hub=HubAccess(hub.endpoint, keys), settings=settings
    )
    edge = await start_edge(work / "edge", EchoModel(), opts)
    auth = {"Authorization": f"Bearer {key}"}
    rng = random.Random(33)
    try:
        await wait_connected(edge)
        budgets = edge.app[STATE].pipeline.budgets
        assert budgets is not None
        local_hold = budgets.max_cost(_probe_request(chat("x", max_tokens=MAX_TOKENS)), False)
        reservation = budgets.max_cost(_probe_request(chat("x", max_tokens=MAX_TOKENS)), True)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            cached = [_words(f"cached{i}", rng) for i in range(10)]
            for q in cached:
                await post_chat(http, edge.base_url, chat(q, max_tokens=MAX_TOKENS), auth)
            await settle(edge)
            served_after = bursts = 0
            exhausted = False
            for _ in range(pick(size, 30, 60, 120)):
                jobs: list[Awaitable[Any]] = []
                for i in range(100):
                    if i % 3 == 0:
                        body = chat(_words("escalate", rng), max_tokens=MAX_TOKENS)
                        jobs.append(
                            post_chat(http, edge.base_url, body, {**auth, "x-edgeroute-route": "hub"})
                        )
                    elif i % 3 == 1:
                        body = chat(_words("stream", rng), max_tokens=MAX_TOKENS)
                        jobs.append(post_stream(http, edge.base_url, body, auth))
                    else:
                        jobs.append(
                            post_chat(
                                http, edge.base_url, chat(rng.choice(cached), max_tokens=MAX_TOKENS), auth
                            )
                        )
                bursts += 1
                results = await asyncio.gather(*jobs)
                if exhausted:
                    served_after += sum(getattr(x, "status", 0) == 200 for x in results)
                    break
                spent, held = await asyncio.to_thread(budgets.ledger.usage, "capped", 24 * 3600.0)
                # exhausted: not even the cheapest request of this shape fits in what is left
                exhausted = budget - spent < local_hold
            spent, held = await asyncio.to_thread(budgets.ledger.usage, "capped", 24 * 3600.0)
            after = [
                await post_chat(http, edge.base_url, chat(q, max_tokens=MAX_TOKENS), auth) for q in cached[:3]
            ]
            after.append(
                await post_chat(http, edge.base_url, chat(_words("late", rng), max_tokens=MAX_TOKENS), auth)
            )
            # control: the same burst from a tenant without a cap spends past the capped one's budget
            free = {"Authorization": "Bearer sk-free-0002", "x-edgeroute-route": "hub"}
            burst = [
                post_chat(http, edge.base_url, chat(_words("free", rng), max_tokens=MAX_TOKENS), free)
                for _ in range(100)
            ]
            free_spent = sum(
                float(a.body.get("edgeroute", {}).get("cost_usd", 0.0)) for a in await asyncio.gather(*burst)
            )
    finally:
        await edge.close()
        await asyncio.to_thread(hub.stop)
    refused_after = sum(
        a.status == 429 and a.body.get("error", {}).get("code") == "budget_exceeded" for a in after
    )
    r.figure(
        budget_usd=budget,
        bursts_of_100=bursts,
        spent_usd=spent,
        held_usd=held,
        max_reservation_usd=reservation,
        over_budget_usd=max(0.0, spent - budget),
        exhausted=exhausted,
        served_after_exhaustion=served_after,
        probes_after_refused=refused_after,
        probes_after=len(after),
        control_uncapped_spent_usd=free_spent,
    )
    r.require(spent <= budget + reservation, f"spent ${spent:.6f} on a ${budget:.6f} budget")
    r.require(exhausted, "the budget was never exhausted: nothing was tested")
    r.require(served_after == 0, f"{served_after} requests were served after the budget ran out")
    r.require(refused_after == len(after), "a request was served after exhaustion (cache hit or local)")
    r.control(free_spent > budget, "the budget (an uncapped tenant's burst)")


def _probe_request(body: dict[str, Any]) -> InferenceRequest:
    msgs = tuple(ChatMessage(role=m["role"], content=m["content"]) for m in body["messages"])
    return InferenceRequest(
        RequestContext("probe", "capped"), "auto", msgs, SamplingParams(max_tokens=body["max_tokens"])
    )


def t33_budgets(size: Size, work: Path) -> Result:
    r = Report("T33", T33_NAME)
    asyncio.run(_t33(size, work, r))
    return r.result()
