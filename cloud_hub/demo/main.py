"""`cloud-hub demo`: keys, enrolment, hub and agent as child processes, a workload, the report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

from cloud_hub.demo.procs import Service, console_script, free_port, run_cli
from cloud_hub.demo.replay import replay
from cloud_hub.demo.report import (
    FrontierModel,
    FrontierPrice,
    plot_routes,
    print_report,
    summarise,
    write_json,
)
from cloud_hub.demo.workload import build_workload
from shared import paths
from shared.config import HubSettings, load_settings
from shared.taxonomy import Tier

HELP = "run hub + edge agent on loopback, replay a representative workload, print the north-star report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", type=Path, default=Path("var/demo"), help="state for both programs")
    parser.add_argument("--requests", type=int, default=40, help="workload size")
    parser.add_argument("--data-dir", type=Path, default=None, help="public data dir")
    parser.add_argument("--hub-config", type=Path, default=None, help="hub YAML (default: embedded)")
    parser.add_argument("--edge-config", type=Path, default=None, help="edge YAML (default: embedded)")
    parser.add_argument(
        "--edge-policy",
        choices=("calibrated", "threshold"),
        default="calibrated",
        help="edge escalation policy without --edge-config; only 'calibrated' sends the hub the "
        "classification it picks tiers with",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the always-hub quality baseline")
    parser.add_argument(
        "--frontier-usd-per-m",
        type=float,
        nargs=2,
        default=(2.50, 10.00),
        metavar=("PROMPT", "COMPLETION"),
        help="reference price of the tier avoided",
    )
    parser.add_argument("--out", type=Path, default=Path("var/demo/report"), help="report JSON + PNG")


def _public_key(keys_dir: Path) -> Path:
    found = sorted(p for p in keys_dir.glob("*.key") if not p.name.endswith("_secret"))
    if not found:
        raise FileNotFoundError(f"no public key in {keys_dir}")
    return found[0]


def run(args: argparse.Namespace) -> int:
    console = Console()
    home: Path = args.home.resolve()
    hub_home, edge_home = home / "hub", home / "edge"
    hub_cli, edge_cli = console_script("cloud-hub"), console_script("edge-agent")

    run_cli(hub_cli, "keys", "init", "--home", str(hub_home))
    run_cli(edge_cli, "keys", "init", "--home", str(edge_home))
    edge_pub = _public_key(edge_home / "keys")
    run_cli(hub_cli, "enroll", "--home", str(hub_home), str(edge_pub))
    hub_url = f"tcp://127.0.0.1:{free_port()}"
    port = free_port()

    hub_argv = [hub_cli, "serve", "--home", str(hub_home), "--bind", hub_url]
    if args.hub_config:
        hub_argv += ["--config", str(args.hub_config)]
    edge_argv = [
        edge_cli,
        "serve",
        "--home",
        str(edge_home),
        "--port",
        str(port),
        "--hub",
        hub_url,
        "--hub-key",
        str(_public_key(hub_home / "keys")),
    ]
    edge_config = args.edge_config
    if edge_config is None:
        edge_config = home / "edge.yaml"
        edge_config.parent.mkdir(parents=True, exist_ok=True)
        edge_config.write_text(f"escalation_policy: {args.edge_policy}\n")
    edge_argv += ["--config", str(edge_config)]
    hub_settings = load_settings(HubSettings, yaml_file=args.hub_config, home=hub_home)
    frontier = [FrontierModel(m.name, m.backend) for m in hub_settings.models if m.tier is Tier.FRONTIER]

    data = args.data_dir or paths.data_dir()
    items = build_workload(data, args.requests)
    with (
        Service("hub", hub_argv, "hub ready on", home / "logs" / "hub.log") as hub,
        Service("edge", edge_argv, "edge agent ready on", home / "logs" / "edge.log") as edge,
    ):
        with console.status("starting the hub (vLLM engine and the frontier stand-in load: about a minute)"):
            hub.start()
            hub.wait_ready(600)
        with console.status("starting the edge agent"):
            edge.start()
            edge.wait_ready(300)
        console.print(f"hub on {hub_url}, agent on http://127.0.0.1:{port}/v1 — {len(items)} requests")
        records = replay(f"http://127.0.0.1:{port}/v1", items, None if args.no_baseline else "hub")

    summary = summarise(records, FrontierPrice(*args.frontier_usd_per_m), frontier)
    print_report(summary, console)
    write_json(summary, args.out / "north_star.json")
    plot_routes(summary, args.out / "routes.png")
    console.print(f"report: {args.out / 'north_star.json'}, plot: {args.out / 'routes.png'}")
    console.print(json.dumps({k: v for k, v in summary.items() if k != "by_route"}))
    return 0 if summary["errors"] == 0 else 1
