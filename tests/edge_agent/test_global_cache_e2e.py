"""The hub's global cache end to end: ``cloud-hub serve`` (llama.cpp SmolLM2 backend) and three
agents as ``edge-agent serve`` assembles them, each with its own tenant and enrolled CURVE key.

Two tenants ask the same generic question through the hub; the hub shares the answer, and a third
agent that never asked receives it over the PUB socket and serves it from its own store.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from edge_agent.assemble import build_app
from edge_agent.cache.db import connect
from edge_agent.serving import BackgroundAgent
from shared.config import CacheSettings, EdgeSettings, LocalModelConfig, TenantConfig
from shared.keys import enroll_public_key, init_keys
from shared.procs import ChildProcess
from tests.edge_agent.live import wait_hub

BIN = Path(sys.executable).parent
QUESTION = "What does the HTTP status code 404 mean?"
PERSONAL = "What is my favourite colour?"
SYSTEM = "Answer in one short sentence."


TENANTS = ("acme", "globex", "initech")


class HubProcess(ChildProcess):
    def __init__(self, root: Path, gguf: Path) -> None:
        self.home = root / "hub"
        init_keys(self.home / "keys")
        for tenant in TENANTS:  # enrolled before the hub starts, so no first handshake is refused
            enroll_public_key(init_keys(root / tenant / "keys")[0], self.home / "enrolled")
        config = root / "hub.yaml"
        model = {"name": "smollm2-135m-instruct", "backend": "llamacpp", "path": str(gguf)}
        config.write_text(yaml.safe_dump({"models": [model], "default_model": model["name"]}))
        cmd = [str(BIN / "cloud-hub"), "serve", "--home", str(self.home), "--bind", "tcp://127.0.0.1:0"]
        cmd += ["--config", str(config), "--telemetry-sink", "memory"]
        super().__init__("hub", cmd, root / "hub.log", ready_prefix="hub ready on ")
        self.endpoint = self.start(timeout_s=120)
        self.cache_line = self.wait_line("global cache on ", timeout_s=120)


def _agent(root: Path, tenant: str, hub: HubProcess, gguf: Path) -> tuple[BackgroundAgent, Path]:
    home = root / tenant
    settings = EdgeSettings(
        home=home,
        local_model=LocalModelConfig(name="smollm2-135m-instruct", path=gguf, n_ctx=1024, n_threads=1),
        hub_url=hub.endpoint,
        hub_public_key_file=hub.home / "keys" / "curve.key",
        tenants=[TenantConfig(name=tenant, api_key=f"key-{tenant}")],
        cache=CacheSettings(path=home / "cache.db"),
        hub_timeout_s=180,  # other work on a shared machine can slow the hub's llama.cpp a lot
    )
    app = asyncio.run(build_app(settings))
    return BackgroundAgent(app).start(), home / "cache.db"


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, smollm_gguf: Path
) -> Iterator[tuple[HubProcess, dict[str, tuple[BackgroundAgent, Path]]]]:
    root = tmp_path_factory.mktemp("global-cache")
    hub = HubProcess(root, smollm_gguf)
    agents: dict[str, tuple[BackgroundAgent, Path]] = {}
    try:
        for tenant in TENANTS:
            agents[tenant] = _agent(root, tenant, hub, smollm_gguf)
        for agent, _ in agents.values():
            wait_hub(agent.base_url, timeout_s=60)
        yield hub, agents
    finally:
        for agent, _ in agents.values():
            agent.stop()
        hub.stop()


def _ask(agent: BackgroundAgent, tenant: str, question: str, **extra: Any) -> dict[str, Any]:
    body = {
        "model": "hub",
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
        "max_tokens": 200,  # a truncated answer never passes the hub's checks
        "temperature": 0,
        **extra,
    }
    headers = {"authorization": f"Bearer key-{tenant}"}
    r = httpx.post(f"{agent.base_url}/v1/chat/completions", json=body, headers=headers, timeout=120)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _hub_seq(cache_db: Path) -> int:
    conn = connect(cache_db)
    try:
        row = conn.execute("SELECT value FROM sem_meta WHERE name = 'hub_seq'").fetchone()
    finally:
        conn.close()
    return int(row[0]) if row else 0


def _wait_seq(cache_db: Path, at_least: int, timeout: float = 20.0) -> int:
    end = time.monotonic() + timeout
    while (seq := _hub_seq(cache_db)) < at_least and time.monotonic() < end:
        time.sleep(0.1)
    return seq


def test_two_tenants_share_an_answer_that_a_third_edge_serves_locally(
    deployment: tuple[HubProcess, dict[str, tuple[BackgroundAgent, Path]]],
) -> None:
    _hub, agents = deployment
    first = _ask(agents["acme"][0], "acme", QUESTION)
    assert first["edgeroute"]["route"].startswith("hub_")
    time.sleep(0.5)
    assert _hub_seq(agents["initech"][1]) == 0  # one tenant asking is not enough to share
    second = _ask(agents["globex"][0], "globex", QUESTION)
    assert second["edgeroute"]["route"].startswith("hub_")
    # the hub shares the first answer it saw (llama.cpp's greedy text can vary between calls)
    answer = first["choices"][0]["message"]["content"]

    assert _wait_seq(agents["initech"][1], 1) == 1
    third = _ask(agents["initech"][0], "initech", QUESTION.lower().rstrip("?"))
    info = third["edgeroute"]
    assert info["route"] == "semantic_cache" and info["cost_usd"] == 0.0
    assert third["choices"][0]["message"]["content"] == answer
    step = next(s for s in info["trace"] if s["stage"] == "semantic_cache")
    assert step["decision"] == "hit" and step["detail"]["origin"] == "hub"


def test_personal_questions_are_never_shared(
    deployment: tuple[HubProcess, dict[str, tuple[BackgroundAgent, Path]]],
) -> None:
    _hub, agents = deployment
    before = _hub_seq(agents["initech"][1])
    for tenant in ("acme", "globex"):
        # a stop string ends the answer normally, so only the question itself keeps it private
        asked = _ask(agents[tenant][0], tenant, PERSONAL, stop=["."], max_tokens=64)
        assert asked["edgeroute"]["route"].startswith("hub_")
        assert asked["choices"][0]["finish_reason"] == "stop"
    time.sleep(1.0)
    assert _hub_seq(agents["initech"][1]) == before
    third = _ask(agents["initech"][0], "initech", PERSONAL)
    assert third["edgeroute"]["route"].startswith("hub_")
