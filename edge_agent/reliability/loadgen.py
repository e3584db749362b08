"""An open-loop HTTP load generator, run as a child process so the agent under test keeps its core.

``python -m edge_agent.reliability.loadgen`` reads a ``Plan`` (JSON) on stdin, sends Poisson
arrivals at ``rate`` per second for ``seconds`` to the agent's chat endpoint (open loop: the next
request leaves when its time comes, answered or not), waits for the stragglers and then prints
one JSON line per request (``Shot``) and a last line with the totals (``Totals``). Results are
held until the end so that writing them costs the generator nothing while it is sending.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp


@dataclass(frozen=True, slots=True)
class Plan:
    url: str  # the agent's base URL
    rate: float
    seconds: float
    prompts: list[str]
    # "choice": a random prompt of ``prompts`` each time; "fresh": ``prompts[0]`` made unique
    pick: str = "choice"
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 30.0
    seed: int = 0
    max_tokens: int = 64


@dataclass(frozen=True, slots=True)
class Shot:
    n: int
    status: int  # 0: timed out or the connection failed
    route: str
    seconds: float
    retry_after: bool


@dataclass(frozen=True, slots=True)
class Totals:
    sent: int
    seconds: float  # how long sending took (the stragglers' wait not included)


def _body(plan: Plan, content: str) -> bytes:
    # greedy, as the echo models need for answers to be cacheable
    body: dict[str, Any] = {
        "model": "auto",
        "messages": [{"role": "user", "content": content}],
        "temperature": 0.0,
        "max_tokens": plan.max_tokens,
    }
    return json.dumps(body).encode()


async def run(plan: Plan) -> tuple[list[Shot], Totals]:
    rng = random.Random(plan.seed)
    # the fixed bodies are encoded once, so a request costs the generator only its sending
    fixed = [_body(plan, p) for p in plan.prompts] if plan.pick == "choice" else []
    headers = {"Content-Type": "application/json", **plan.headers}
    timeout = aiohttp.ClientTimeout(total=plan.timeout_s)
    url = plan.url + "/v1/chat/completions"
    shots: list[Shot] = []
    tasks: set[asyncio.Task[None]] = set()

    async def one(n: int, data: bytes) -> None:
        started = time.perf_counter()
        try:
            async with http.post(url, data=data, headers=headers, timeout=timeout) as resp:
                await resp.read()
                shot = Shot(
                    n,
                    resp.status,
                    resp.headers.get("x-edgeroute-route", ""),
                    time.perf_counter() - started,
                    "Retry-After" in resp.headers,
                )
        except (TimeoutError, aiohttp.ClientError):
            shot = Shot(n, 0, "", time.perf_counter() - started, False)
        shots.append(shot)

    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        start = due = loop.time()
        sent = 0
        while due - start < plan.seconds:
            await asyncio.sleep(max(0.0, due - loop.time()))
            data = rng.choice(fixed) if fixed else _body(plan, f"{plan.prompts[0]} {sent} {rng.random()}")
            task = asyncio.create_task(one(sent, data))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
            due += rng.expovariate(plan.rate)
        took = loop.time() - start
        if tasks:
            await asyncio.wait(tasks)
    return sorted(shots, key=lambda s: s.n), Totals(sent, took)


def parse(output: str) -> tuple[list[Shot], Totals]:
    """The generator's output back as its records; the last line is the totals."""
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    if not lines:
        raise ValueError("the load generator printed nothing")
    return [Shot(**line) for line in lines[:-1]], Totals(**lines[-1])


def main() -> None:
    plan = Plan(**json.loads(sys.stdin.read()))
    shots, totals = asyncio.run(run(plan))
    out = sys.stdout
    for shot in shots:
        out.write(json.dumps(asdict(shot)) + "\n")
    out.write(json.dumps(asdict(totals)) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
