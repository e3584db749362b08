"""End to end: ``cloud-hub serve`` with vLLM on Qwen2.5-Coder-0.5B, two ``edge-agent serve``
processes with SmolLM2 (one that always trusts its draft, one that never does), real CURVE keys
made and enrolled with the CLIs, and the official ``openai`` client.

It kills the hub mid-run and restarts it, so it takes minutes (two vLLM engine starts).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from shared.procs import ChildProcess
from tests.edge_agent.live import wait_hub

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
HUB_MODEL = "qwen2.5-coder-0.5b-instruct"
TASKS = ("reverses a string", "sums a list", "counts vowels", "checks for palindromes", "finds the maximum")


def _question(n: int) -> list[Any]:
    """A different question per test, so the edge's cache never answers one test from another."""
    return [{"role": "user", "content": f"Write a Python function that {TASKS[n]}."}]


def _cli(*args: str) -> str:
    done = subprocess.run(
        [str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout


@dataclass
class Deployment:
    hub: ChildProcess
    hub_endpoint: str
    confident: str  # base URL of the agent with threshold 0
    doubtful: str  # base URL of the agent with threshold 1


def _agent(
    root: Path, name: str, threshold: float, hub_endpoint: str, hub_key: Path, gguf: Path
) -> ChildProcess:
    home = root / name
    public = Path(_cli("edge-agent", "keys", "init", "--home", str(home)).strip())
    _cli("cloud-hub", "enroll", "--home", str(root / "hub"), str(public))
    config = home / "edge.yaml"
    config.write_text(
        yaml.safe_dump(
            {"confidence_threshold": threshold, "draft_tokens": 8, "heartbeat_s": 2.0, "hub_timeout_s": 120}
        )
    )
    cmd = [str(BIN / "edge-agent"), "serve", "--home", str(home), "--port", "0", "--hub", hub_endpoint]
    cmd += ["--hub-key", str(hub_key), "--config", str(config), "--model", str(gguf)]
    return ChildProcess(name, cmd, home / "agent.log", ready_prefix="edge agent ready on ", grace_s=60)


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, smollm_gguf: Path
) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("e2e")
    hub_home = root / "hub"
    _cli("cloud-hub", "keys", "init", "--home", str(hub_home))
    hub_key = hub_home / "keys" / "curve.key"
    config = root / "hub.yaml"
    model = {"name": HUB_MODEL, "backend": "vllm", "tier": "oss", "max_model_len": 2048}
    model["cost"] = {"usd_per_gpu_second": 0.0006}
    config.write_text(yaml.safe_dump({"models_dir": str(models_dir), "heartbeat_s": 2.0, "models": [model]}))
    cmd = [str(BIN / "cloud-hub"), "serve", "--home", str(hub_home), "--bind", "tcp://127.0.0.1:0"]
    cmd += ["--config", str(config)]
    hub = ChildProcess("hub", cmd, root / "hub.log", ready_prefix="hub ready on ", grace_s=60)
    endpoint = hub.start(timeout_s=480)
    hub.argv[hub.argv.index("tcp://127.0.0.1:0")] = endpoint  # restarts keep the port
    agents = [
        _agent(root, n, t, endpoint, hub_key, smollm_gguf) for n, t in (("edge-a", 0.0), ("edge-b", 1.0))
    ]
    try:
        urls = [a.start(timeout_s=120) for a in agents]
        for url in urls:
            wait_hub(url, "connected", 60)
        yield Deployment(hub, endpoint, urls[0], urls[1])
    finally:
        for proc in (*agents, hub):
            proc.stop()


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)


def _trace(obj: Any) -> dict[str, Any]:
    info: dict[str, Any] = (obj.model_extra or {})["edgeroute"]
    return info


def _routing(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The trace after the cache stages, which must all have missed."""
    steps = info["trace"]
    caches = [s for s in steps if s["stage"].endswith("_cache")]
    assert caches and all(s["decision"] in ("miss", "skip") for s in caches), caches
    return [s for s in steps if not s["stage"].endswith("_cache")]


def test_doubtful_edge_escalates_to_vllm(deployment: Deployment) -> None:
    raw = _client(deployment.doubtful).chat.completions.with_raw_response.create(
        model="auto", messages=_question(0), max_tokens=48, temperature=0
    )
    done = raw.parse()
    info = _trace(done)
    assert raw.headers["x-edgeroute-route"] == "hub_oss"
    assert done.model == HUB_MODEL
    assert "def " in (done.choices[0].message.content or "")  # Qwen-Coder's answer
    steps = _routing(info)
    assert [(s["stage"], s["decision"]) for s in steps] == [
        ("policy", "escalate"),
        ("policy", "route"),  # the hub's tier plan: its only model, the default
        ("hub_oss", "chosen"),
        ("hub_oss", "answer"),
        ("hub", "reply"),
    ]
    assert "vllm backend" in steps[3]["reason"]
    assert info["cost_usd"] > 0
    # asked again, the hub's answer now comes from the edge's exact cache
    again = _client(deployment.doubtful).chat.completions.with_raw_response.create(
        model="auto", messages=_question(0), max_tokens=48, temperature=0
    )
    assert again.headers["x-edgeroute-route"] == "exact_cache"
    assert again.parse().choices[0].message.content == done.choices[0].message.content


def test_confident_edge_stays_local(deployment: Deployment) -> None:
    raw = _client(deployment.confident).chat.completions.with_raw_response.create(
        model="auto", messages=_question(1), max_tokens=16
    )
    steps = _routing(_trace(raw.parse()))
    assert raw.headers["x-edgeroute-route"] == "edge_local"
    assert [s["stage"] for s in steps] == ["policy", "edge_local"]
    assert ">= 0.000" in steps[0]["reason"]


def test_streaming_through_both_paths(deployment: Deployment) -> None:
    for url, route in ((deployment.doubtful, "hub_oss"), (deployment.confident, "edge_local")):
        with _client(url).chat.completions.with_streaming_response.create(
            model="auto",
            messages=_question(2),
            max_tokens=24,
            stream=True,
            stream_options={"include_usage": True},
        ) as response:
            header = response.headers["x-edgeroute-route"]
            chunks = list(response.parse())
        assert header == route, _trace(chunks[-1])
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text
        assert _trace(chunks[-1])["route"] == route
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_hub_killed_then_restarted(deployment: Deployment) -> None:
    deployment.hub.stop(signal.SIGTERM)  # SIGKILL would orphan the vLLM engine process
    wait_hub(deployment.doubtful, "disconnected", 30)
    done = _client(deployment.doubtful).chat.completions.create(
        model="auto", messages=_question(3), max_tokens=12
    )
    info = _trace(done)
    assert info["route"] == "edge_local" and info["fallback"] is True
    reasons = {s["stage"]: s["reason"] for s in info["trace"]}
    assert "hub not connected" in reasons["hub"]
    deployment.hub.start(timeout_s=480)
    wait_hub(deployment.doubtful, "connected", 60)
    again = _client(deployment.doubtful).chat.completions.with_raw_response.create(
        model="auto", messages=_question(4), max_tokens=12
    )
    assert again.headers["x-edgeroute-route"] == "hub_oss"
