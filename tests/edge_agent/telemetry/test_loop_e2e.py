"""The whole feedback loop with real processes: ``cloud-hub serve`` (echo backend, SQLite sink),
``edge-agent serve`` with SmolLM2, the ``openai`` client, a hub kill -9 and restart, the edge's
``/metrics`` scrape, ``POST /v1/feedback``, and ``cloud-hub eval run|report|export`` on what
arrived at the hub.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from cloud_hub.telemetry.store import store_path
from shared.procs import ChildProcess
from tests.edge_agent.live import wait_hub
from tests.edge_agent.test_e2e_hub import _cli

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


@dataclass
class Loop:
    hub: ChildProcess
    hub_home: Path
    edge: str


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory, smollm_gguf: Path) -> Iterator[Loop]:
    root = tmp_path_factory.mktemp("loop")
    hub_home = root / "hub"
    _cli("cloud-hub", "keys", "init", "--home", str(hub_home))
    config = root / "hub.yaml"
    config.write_text(yaml.safe_dump({"heartbeat_s": 0.5, "models": [{"name": "echo", "backend": "echo"}],
                                      "default_model": "echo"}))  # fmt: skip
    cmd = [str(BIN / "cloud-hub"), "serve", "--home", str(hub_home), "--bind", "tcp://127.0.0.1:0"]
    cmd += ["--config", str(config)]
    hub = ChildProcess("hub", cmd, root / "hub.log", ready_prefix="hub ready on ", grace_s=60)
    endpoint = hub.start(timeout_s=120)
    hub.argv[hub.argv.index("tcp://127.0.0.1:0")] = endpoint
    home = root / "edge"
    public = Path(_cli("edge-agent", "keys", "init", "--home", str(home)).strip())
    _cli("cloud-hub", "enroll", "--home", str(hub_home), str(public))
    edge_cfg = home / "edge.yaml"
    edge_cfg.write_text(yaml.safe_dump({"confidence_threshold": 1.0, "draft_tokens": 4, "heartbeat_s": 0.5,
                                        "hub_timeout_s": 30}))  # fmt: skip
    agent_cmd = [str(BIN / "edge-agent"), "serve", "--home", str(home), "--port", "0", "--hub", endpoint,
                 "--hub-key", str(hub_home / "keys" / "curve.key"), "--config", str(edge_cfg),
                 "--model", str(smollm_gguf)]  # fmt: skip
    agent = ChildProcess(
        "edge", agent_cmd, home / "agent.log", ready_prefix="edge agent ready on ", grace_s=60
    )
    try:
        url = agent.start(timeout_s=120)
        wait_hub(url, "connected", 60)
        yield Loop(hub, hub_home, url)
    finally:
        agent.stop()
        hub.stop()


def _ask(url: str, text: str, route: str | None = None, regenerate: bool = False) -> tuple[str, str]:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
    headers = {"x-edgeroute-route": route} if route else {}
    if regenerate:
        headers["x-edgeroute-regenerate"] = "true"
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": text}], max_tokens=8, temperature=0,
        extra_headers=headers,
    )  # fmt: skip
    raw.parse()
    return raw.headers["x-request-id"], raw.headers["x-edgeroute-route"]


def _hub_counts(hub_home: Path) -> dict[str, int]:
    path = store_path(hub_home)
    if not path.exists():
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT kind, COUNT(*) FROM events GROUP BY kind").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()


def _series(metrics: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_traffic_metrics_delivery_and_evaluation(loop: Loop) -> None:
    escalated, route = _ask(loop.edge, "Name three primary colours.")
    assert route == "hub_oss"
    assert _ask(loop.edge, "Name three primary colours.")[1] == "exact_cache"
    local, route = _ask(loop.edge, "How many legs does a spider have?", "edge_local")
    assert route == "edge_local"
    _ask(loop.edge, "How many legs does a spider have ?!", "edge_local")  # a near-duplicate re-ask
    _ask(
        loop.edge, "Write a haiku about rain.", "edge_local", regenerate=True
    )  # the user pressed "regenerate"
    bad_flag = httpx.post(
        f"{loop.edge}/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-edgeroute-regenerate": "maybe"},
    )
    assert bad_flag.status_code == 400 and bad_flag.json()["error"]["param"] == "x-edgeroute-regenerate"
    loop.hub.stop(signal.SIGKILL)
    wait_hub(loop.edge, "disconnected", 30)
    fallback, route = _ask(loop.edge, "What is the boiling point of water at sea level?")
    assert route == "edge_local"  # served during the outage
    feedback = httpx.post(f"{loop.edge}/v1/feedback", json={"response_id": escalated, "thumbs": "down"})
    assert feedback.status_code == 200, feedback.text
    bad = httpx.post(f"{loop.edge}/v1/feedback", json={"response_id": escalated, "stars": 9})
    assert bad.status_code == 400 and bad.json()["error"]["param"]

    metrics = httpx.get(f"{loop.edge}/metrics").text
    assert _series(metrics, "edgeroute_cache_hits_total", route="exact_cache") == 1
    assert _series(metrics, "edgeroute_escalations_total", route="hub_oss") >= 1
    assert _series(metrics, "edgeroute_fallbacks_total", route="edge_local") == 1
    # the repeated colour question and the reworded spider question are both re-asks, whichever
    # route (the caches, here) answered them
    regen = [line for line in metrics.splitlines() if line.startswith("edgeroute_regenerations_total")]
    assert _series(metrics, "edgeroute_regenerations_total", source="near_duplicate") == 2, regen
    assert _series(metrics, "edgeroute_regenerations_total", route="edge_local", source="explicit") == 1, (
        regen
    )
    assert _series(metrics, "edgeroute_requests_total") == 6
    assert _series(metrics, "edgeroute_cost_usd_total", route="hub_oss") >= 0
    assert _series(metrics, "edgeroute_request_duration_seconds_count") == 6
    assert _series(metrics, "edgeroute_request_duration_seconds_count", route="edge_local") >= 2
    assert _series(metrics, "edgeroute_feedback_total", sentiment="negative") == 1

    loop.hub.start(timeout_s=120)
    wait_hub(loop.edge, "connected", 60)
    end = time.monotonic() + 60
    while time.monotonic() < end and _hub_counts(loop.hub_home).get("request", 0) < 6:
        time.sleep(0.5)
    counts = _hub_counts(loop.hub_home)
    assert counts.get("request") == 6 and counts.get("feedback") == 1, counts  # all delivered, once

    out = loop.hub_home / "export"
    run = _cli("cloud-hub", "eval", "run", "--home", str(loop.hub_home), "--min-n", "1", "--no-mlflow")
    run_id = run.strip().splitlines()[-1]
    report = json.loads(_cli("cloud-hub", "eval", "report", "--home", str(loop.hub_home), "--json"))
    assert report["run_id"] == run_id
    assert report["failure_modes"].get("negative_feedback") == 1
    assert report["failure_modes"].get("regenerated") == 1
    exported = json.loads(
        _cli("cloud-hub", "eval", "export", "--home", str(loop.hub_home), "--out", str(out))
    )
    assert exported["failures"] == 2
    failures = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    modes: dict[str, Any] = {f["failure_mode"]: f for f in failures}
    assert modes["negative_feedback"]["route"] == "hub_oss"
    assert modes["regenerated"]["route"] == "edge_local"
    del local, fallback
