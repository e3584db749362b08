"""`cloud-hub calibrate`: refit the router's success heads and thresholds on the deployed tiers.

Collects live outcomes of the live tiers (edge, hub OSS) on training items through the running
system, joins the replayed tiers' recorded outcomes, fits, prints per-tier figures and writes
``success_head.npz``, ``thresholds.json`` and ``manifest.json``. ``--fit-only`` refits from an
outcomes file written earlier (seconds, no deployment).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from shared.routing.heads import HEADS_DIR

if TYPE_CHECKING:
    from cloud_hub.calibrate.fit import FitResult

HELP = "fit the routing success heads and thresholds on the deployed tiers (live answers on train items)"
DEFAULT_OUTCOMES = HEADS_DIR / "outcomes" / "live_train.csv"
# about 15 minutes on 2 cores: 15 per source took 19.7 (hub start 3.6, the oss pass 15.6 with the
# edge pass alongside, fit 0.2; a first fit embeds 8,600 prompts, 2 min more); the oss pass is
# ~12.5 s per item
DEFAULT_PER_SOURCE = 10
# the calibration rows are few (every tier answers each one, the live ones slowly), and the cheapest
# setting that reaches a target as measured on them is the luckiest: held out on the demo's items
# it delivered 0.75 of the frontier's quality at target 0.95, against 0.90 with this bound
DEFAULT_CONFIDENCE = 0.95


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", type=Path, default=Path("var/calibrate"), help="state for both programs")
    parser.add_argument("--data-dir", type=Path, default=None, help="public data dir (EDGEROUTE_DATA_DIR)")
    parser.add_argument(
        "--per-source", type=int, default=DEFAULT_PER_SOURCE, help="train items asked per source"
    )
    parser.add_argument("--seed", type=int, default=0, help="which train items are drawn")
    parser.add_argument("--out", type=Path, default=HEADS_DIR, help="where the heads and thresholds go")
    parser.add_argument(
        "--outcomes",
        type=Path,
        default=DEFAULT_OUTCOMES,
        help="the live outcomes CSV (written, or read with --fit-only)",
    )
    parser.add_argument("--fit-only", action="store_true", help="skip collection: refit from --outcomes")
    parser.add_argument(
        "--dataset",
        type=Path,
        action="append",
        default=[],
        help="an extra recorded-outcomes file (RouterBench schema); repeatable",
    )
    parser.add_argument("--hub-config", type=Path, default=None, help="hub YAML (default: embedded)")
    parser.add_argument("--edge-config", type=Path, default=None, help="edge YAML (default: embedded)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--embedding-cache", type=Path, default=None, help="MiniLM vector cache file")
    parser.add_argument(
        "--confidence",
        type=float,
        default=DEFAULT_CONFIDENCE,
        help="a target counts as met only at this bootstrap lower bound of the quality ratio"
        " (0: as measured on the calibration rows)",
    )
    parser.add_argument(
        "--replay",
        type=Path,
        default=None,
        help="a finished demo run's records.jsonl: print the new heads' and table's curve on its items",
    )


def _fmt(v: float, spec: str = ".3f") -> str:
    return "n/a" if v != v else format(v, spec)  # NaN: the tier had one outcome class only


def print_report(console: Console, result: FitResult) -> None:
    t = Table(
        title=f"success head on {result.rows} train rows; thresholds on the {result.calibration_rows} "
        "rows every tier answered"
    )
    for col in (
        "tier",
        "model",
        "outcomes",
        "rows",
        "accuracy",
        "USD/request",
        "AUC (oof)",
        "head acc (oof)",
        "majority",
        "l2",
    ):
        t.add_column(col, justify="left" if col in ("tier", "model", "outcomes") else "right")
    for f in result.tiers:
        t.add_row(
            f.tier,
            f.model,
            f.outcomes,
            str(f.rows),
            _fmt(f.success_rate),
            _fmt(f.mean_cost, ".3g"),
            _fmt(f.auc),
            _fmt(f.head_accuracy),
            _fmt(f.majority),
            f"{f.l2:g}",
        )
    console.print(t)
    p = Table(
        title=f"thresholds (reference {result.table.reference}, quality {result.table.reference_quality:.3f})"
    )
    bounded = result.table.confidence > 0
    cols = ["target", "lambda", "quality", "USD/request", "reached"]
    for col in [*cols, f"ratio, {result.table.confidence:.0%} lower bound"] if bounded else cols:
        p.add_column(col, justify="right")
    for pt in result.table.points:
        row = [f"{pt.target:.2f}", f"{pt.lam:.4g}", f"{pt.quality:.3f}", f"{pt.cost:.3g}"]
        row.append("yes" if pt.reached else "no")
        p.add_row(*row, *([_fmt(pt.lower if pt.lower is not None else float("nan"))] if bounded else []))
    console.print(p)


def _rel(path: Path) -> str:
    """Paths inside the repository are recorded relative to it, so a manifest reads the same anywhere."""
    from shared.paths import REPO_ROOT

    resolved = path.resolve()
    return str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else str(resolved)


def _collection_file(outcomes: Path) -> Path:
    return outcomes.with_name(outcomes.stem + ".collection.json")


def run(args: argparse.Namespace) -> int:
    from cloud_hub.calibrate.collect import collect, pick_items, usable
    from cloud_hub.calibrate.fit import file_sha256, fit, write
    from cloud_hub.calibrate.outcomes import RecordedCosts, join
    from cloud_hub.calibrate.plan import deployed_tiers, describe
    from cloud_hub.calibrate.replay import print_curve, replay_curve
    from cloud_hub.demo.items import DEFAULT_SOURCES, load_items
    from shared import paths
    from shared.routing.datasets import load_outcomes
    from shared.routing.embed import CachedEmbedder, default_cache_file, embedder_id, load_default_embedder

    # a log file or pipe gets 80 columns by default: too narrow for the per-tier table
    console = Console() if Console().is_terminal else Console(width=132)
    started = time.monotonic()
    for name in ("httpx", "httpx2"):  # one INFO line per request would bury the progress bars
        logging.getLogger(name).setLevel(logging.WARNING)
    command = " ".join(["cloud-hub", *sys.argv[1:]]) if sys.argv[1:] else "cloud-hub calibrate"
    data = (args.data_dir or paths.data_dir()).resolve()
    datasets = [p.resolve() for p in args.dataset]
    sources = [*DEFAULT_SOURCES, *datasets]
    items, loaded = load_items(data, sources)
    home = args.home.resolve()
    tiers = deployed_tiers(home, args.hub_config, args.edge_config, datasets)
    for t in tiers:
        how = "live" if t.live else "recorded: " + ", ".join(t.recorded_models)
        console.print(f"{t.tier.value:>9}: {t.model} ({t.backend}; {how})")
    if not args.fit_only:
        if args.per_source < 1:
            console.print("[red]--per-source must be at least 1[/red]")
            return 2
        picked = pick_items(items, tiers, args.per_source, args.seed)
        by_source = {s: sum(1 for i in picked if i.source == s) for s in sorted({i.source for i in picked})}
        console.print(f"asking {len(picked)} train items: {by_source}")
        collect(
            picked,
            tiers,
            home=home,
            console=console,
            outcomes=args.outcomes,
            hub_config=args.hub_config,
            edge_config=args.edge_config,
            datasets=datasets,
            concurrency=args.concurrency,
        )
        collection = {
            "command": command,
            "per_source": args.per_source,
            "seed": args.seed,
            "items": len(picked),
            "wall_s": round(time.monotonic() - started, 1),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        _collection_file(args.outcomes).write_text(json.dumps(collection, indent=2) + "\n", encoding="utf-8")
        console.print(f"live outcomes: {args.outcomes}")
    elif not args.outcomes.is_file():
        console.print(f"[red]--fit-only needs an outcomes file; {args.outcomes} does not exist[/red]")
        return 2
    # every recorded train item teaches the replayed tiers; the live rows come first
    recorded_only = [i for i in items if usable(i, tiers)]
    joined = join(
        load_outcomes(args.outcomes), items, tiers, RecordedCosts.load(data, sources), recorded_only
    )
    if joined.dropped:
        console.print(f"left out: {dict(joined.dropped)}")
    if not 0.0 <= args.confidence < 1.0:
        console.print(f"[red]--confidence must be in [0, 1), not {args.confidence}[/red]")
        return 2
    if args.replay is not None and not args.replay.is_file():
        console.print(f"[red]--replay needs a demo run's records.jsonl; {args.replay} does not exist[/red]")
        return 2
    emb = CachedEmbedder(load_default_embedder(), args.embedding_cache or default_cache_file(), embedder_id())
    try:
        with console.status(f"embedding {len(joined)} train prompts, fitting"):
            result = fit(joined, emb, confidence=args.confidence)
    finally:
        emb.close()
    sidecar = _collection_file(args.outcomes)
    extra: dict[str, object] = {
        "command": command,
        "trained_by": "cloud-hub calibrate",
        "tiers": describe(tiers),
        "outcomes": {"path": _rel(args.outcomes), "sha256": file_sha256(args.outcomes)},
        "collection": json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.is_file() else None,
        "data_sha256": loaded.files,
        "calibrated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write(result, args.out, emb.model_id, extra)
    print_report(console, result)
    if args.replay is not None:
        curve = replay_curve(args.replay, items, args.out, load_default_embedder())
        print_curve(console, args.replay, curve)
    console.print(f"wrote {args.out} in {time.monotonic() - started:.0f} s")
    return 0
