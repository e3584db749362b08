"""Bring up the system under test the way an operator would: keys, enrolment, hub, edge agent.

Both programs run as child processes from their console scripts. The hub runs its embedded default
deployment unless a YAML is given; recorded-outcomes files passed with ``--dataset`` are added to
every replayed tier, so the replay backend can answer the new items.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from rich.console import Console

from cloud_hub.demo.procs import console_script, free_port, run_cli
from shared.config import EdgeSettings, HubModelEntry, HubSettings, load_settings
from shared.procs import ChildProcess


@dataclass(frozen=True)
class Deployment:
    base_url: str  # the edge agent's OpenAI API
    api_keys: dict[str, str]  # tenant -> API key
    hub_models: tuple[HubModelEntry, ...]
    hub_url: str
    edge_model: str


def _public_key(keys_dir: Path) -> Path:
    found = sorted(p for p in keys_dir.glob("*.key") if not p.name.endswith("_secret"))
    if not found:
        raise FileNotFoundError(f"no public key in {keys_dir}")
    return found[0]


def hub_models(hub_config: Path | None, home: Path, datasets: Sequence[Path]) -> list[HubModelEntry]:
    settings = load_settings(HubSettings, yaml_file=hub_config, home=home)
    models = []
    for m in settings.models:
        if m.backend == "replay" and datasets:
            m = m.model_copy(update={"recorded": [*m.recorded, *(p.resolve() for p in datasets)]})
        models.append(m)
    return models


def _hub_yaml(path: Path, base: Path | None, models: Sequence[HubModelEntry]) -> Path:
    body = yaml.safe_load(base.read_text(encoding="utf-8")) if base else {}
    body = body or {}
    body["models"] = [m.model_dump(mode="json", exclude_none=True, exclude={"api_key"}) for m in models]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


def _edge_yaml(path: Path, base: Path | None, keys: dict[str, str]) -> Path:
    body = yaml.safe_load(base.read_text(encoding="utf-8")) if base else {}
    body = body or {}
    body.setdefault("escalation_policy", "calibrated")
    # a benchmark on a small CPU host measures answers, not a deadline tuned for production GPUs
    body.setdefault("hub_timeout_s", 900.0)
    # the hub's evaluation grades answers from telemetry (reference checks, the judge): it needs them
    body.setdefault("telemetry_capture_content", True)
    body.setdefault("tenants", [{"name": t, "api_key": k} for t, k in keys.items()])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


STATE_DIRS = ("hub", "edge", "logs")  # what a run writes under its home, besides its report files


def fresh_state(home: Path) -> None:
    """Remove what an earlier run left under ``home``: its caches, the hub's global cache and its
    telemetry would otherwise answer this run's questions with that run's answers. Only the
    folders a run makes are removed, so a ``--home`` that holds anything else keeps it."""
    for name in STATE_DIRS:
        shutil.rmtree(home / name, ignore_errors=True)


@contextmanager
def deployed(
    home: Path,
    console: Console,
    *,
    tenants: Sequence[str],
    hub_config: Path | None = None,
    edge_config: Path | None = None,
    datasets: Sequence[Path] = (),
) -> Iterator[Deployment]:
    home = home.resolve()
    fresh_state(home)
    hub_home, edge_home = home / "hub", home / "edge"
    hub_cli, edge_cli = console_script("cloud-hub"), console_script("edge-agent")
    run_cli(hub_cli, "keys", "init", "--home", str(hub_home))
    run_cli(edge_cli, "keys", "init", "--home", str(edge_home))
    run_cli(hub_cli, "enroll", "--home", str(hub_home), str(_public_key(edge_home / "keys")))
    hub_url = f"tcp://127.0.0.1:{free_port()}"
    port = free_port()
    models = hub_models(hub_config, hub_home, datasets)
    keys = {t: f"sk-demo-{t}" for t in tenants}
    hub_yaml = _hub_yaml(home / "hub.yaml", hub_config, models)
    edge_yaml = _edge_yaml(home / "edge.yaml", edge_config, keys)
    hub_argv = [hub_cli, "serve", "--home", str(hub_home), "--bind", hub_url, "--config", str(hub_yaml)]
    edge_argv = [
        *(edge_cli, "serve", "--home", str(edge_home), "--port", str(port), "--hub", hub_url),
        *("--hub-key", str(_public_key(hub_home / "keys")), "--config", str(edge_yaml)),
    ]
    logs = home / "logs"
    hub = ChildProcess("hub", hub_argv, logs / "hub.log", ready_prefix="hub ready on ", grace_s=20)
    edge = ChildProcess("edge", edge_argv, logs / "edge.log", ready_prefix="edge agent ready on ", grace_s=20)
    with hub, edge:
        with console.status("starting the hub (the vLLM engine loads: one to four minutes on 2 cores)"):
            hub.start(timeout_s=900)
        with console.status("starting the edge agent"):
            edge.start(timeout_s=300)
        with console.status("waiting for the edge's link to the hub"):
            _wait_linked(f"http://127.0.0.1:{port}/health", timeout_s=120)
        edge_model = load_settings(EdgeSettings, yaml_file=edge_yaml, home=edge_home).local_model.name
        yield Deployment(f"http://127.0.0.1:{port}/v1", keys, tuple(models), hub_url, edge_model)


def _wait_linked(health_url: str, timeout_s: float) -> None:
    """Until the edge reports its hub link up: a pinned hub request sent before that is answered
    by the edge's own model, which a run would then count as the hub tier's miss."""
    end = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(health_url, timeout=5) as resp:
                if json.loads(resp.read()).get("hub") == "connected":
                    return
        except OSError:
            pass  # up a moment ago; a refused or slow answer is asked again
        if time.monotonic() > end:
            raise RuntimeError(f"the edge did not connect to the hub within {timeout_s:.0f} s")
        time.sleep(0.2)
