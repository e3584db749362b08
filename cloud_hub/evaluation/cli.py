"""``cloud-hub eval run|report|export|stats|calibrate-judge`` — every subcommand takes ``--home DIR``.

Layout under the hub home: ``telemetry/events.db`` (events and evaluation results),
``eval/<run id>/`` (report and JSONL exports), ``mlruns/`` (MLflow file store),
``policy.json`` (the canary controller's thresholds).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

HELP = "evaluate sampled traffic: run, report, export, calibrate the judge"


def _home(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", type=Path, required=True, help="hub home directory")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="eval_command", required=True, metavar="ACTION")
    run = sub.add_parser("run", help="score a stratified sample of stored traffic")
    _home(run)
    run.add_argument("--since-hours", type=float, default=None, help="only events this recent")
    run.add_argument("--per-stratum", type=int, default=50)
    run.add_argument("--oversample", type=float, default=4.0)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--judge", default="none", help="GGUF model name in the models dir, or 'none'")
    run.add_argument(
        "--judge-budget", type=int, default=100, help="answers the judge may grade per run (default 100)"
    )
    run.add_argument(
        "--judge-uncalibrated", action="store_true", help="use the judge without a calibrate-judge result"
    )
    run.add_argument("--target", action="append", default=[], metavar="DOMAIN=RATE")
    run.add_argument("--default-target", type=float, default=0.8)
    run.add_argument("--min-n", type=int, default=10)
    run.add_argument("--mlflow-uri", default=None, help="default: file store under --home")
    run.add_argument("--no-mlflow", action="store_true")
    run.add_argument("--recalibrate", action="store_true", help="propose a threshold and run its canary")
    run.add_argument("--canary-share", type=float, default=0.1)
    report = sub.add_parser("report", help="print the weakness report of a run")
    _home(report)
    report.add_argument("--run", default=None, help="run id (default: latest)")
    report.add_argument("--json", action="store_true")
    export = sub.add_parser("export", help="write failures and preference pairs as JSONL")
    _home(export)
    export.add_argument("--run", default=None)
    export.add_argument("--out", type=Path, default=None, help="default: <home>/eval/<run>/")
    stats = sub.add_parser("stats", help="traffic aggregates: rates, cost and latency per group")
    _home(stats)
    stats.add_argument(
        "--by", default="route", help="comma list of route,domain,model,tenant,task,edge,canary,policy"
    )
    stats.add_argument("--window", type=float, default=None, help="time window in seconds")
    stats.add_argument("--since-hours", type=float, default=None)
    stats.add_argument("--json", action="store_true")
    cal = sub.add_parser("calibrate-judge", help="agreement of the judge with GPT-4 on MT-Bench")
    _home(cal)
    cal.add_argument("--judge", default="qwen2.5-coder-0.5b-instruct")
    cal.add_argument("--limit", type=int, default=40)
    cal.add_argument("--seed", type=int, default=0)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _say(console: Console, text: str) -> None:
    """Print as is: the report is Markdown, and wrapping it at the terminal width would break its
    table rows and links (a piped stderr is 80 columns to rich); brackets are text, not markup."""
    console.print(text, soft_wrap=True, markup=False, highlight=False)


def _open_judge(name: str) -> Any:
    from cloud_hub.evaluation.judge import LlamaCppJudge
    from models.manifest import artifact_path

    return LlamaCppJudge(artifact_path(name))


def _targets(pairs: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for pair in pairs:
        domain, sep, rate = pair.partition("=")
        if not sep:
            raise SystemExit(f"--target expects DOMAIN=RATE, got {pair!r}")
        out[domain] = float(rate)
    return out


def run(args: argparse.Namespace) -> int:
    from cloud_hub.telemetry.store import TelemetryStore, store_path

    console = Console(stderr=True)
    home: Path = args.home
    if args.eval_command == "calibrate-judge":
        return _calibrate(args, console)
    store = TelemetryStore(store_path(home))
    try:
        if args.eval_command == "run":
            return _run(args, store, console)
        if args.eval_command == "stats":
            return _stats(args, store, console)
        return _report_or_export(args, store, console)
    finally:
        store.close()


def _run(args: argparse.Namespace, store: Any, console: Console) -> int:
    from cloud_hub.evaluation.canary import CanaryController, propose_threshold
    from cloud_hub.evaluation.publish import local_tracking_uri, log_run
    from cloud_hub.evaluation.report import render_markdown
    from cloud_hub.evaluation.results import export_run
    from cloud_hub.evaluation.runner import EvalConfig, EvalRunner

    judge = None
    pass_at = 7.0
    if args.judge != "none":
        calibration = args.home / "eval" / f"judge-calibration-{args.judge}.json"
        if calibration.is_file():
            measured = json.loads(calibration.read_text())
            pass_at = float(measured.get("best_pass_at", 7.0))
            console.print(
                f"judge {args.judge}: pass mark {pass_at:.2f} from calibration "
                f"(balanced accuracy {measured.get('best_balanced_accuracy', 0.5):.2f}, "
                f"Spearman {measured.get('spearman', float('nan')):.2f} vs GPT-4)"
            )
        elif not args.judge_uncalibrated:
            console.print(f"judge {args.judge} is uncalibrated: run `cloud-hub eval calibrate-judge` first")
            return 2
        judge = _open_judge(args.judge)
    config = EvalConfig(
        per_stratum=args.per_stratum, oversample=args.oversample, seed=args.seed,
        judge_budget=args.judge_budget,
        targets=_targets(args.target), default_target=args.default_target, min_n=args.min_n,
        since=time.time() - args.since_hours * 3600 if args.since_hours else None,
    )  # fmt: skip
    runner = EvalRunner(store, judge=judge, judge_pass_at=pass_at)
    with _progress(console) as bar:
        task = bar.add_task("scoring", total=None)
        outcome = runner.run(config, lambda done, total: bar.update(task, completed=done, total=total))
    if judge is not None:
        judge.close()
    out_dir = args.home / "eval" / outcome.run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(outcome.report)
    (out_dir / "report.md").write_text(markdown + "\n")
    (out_dir / "report.json").write_text(json.dumps(outcome.report.to_dict(), indent=2))
    counts = export_run(store, runner.results, outcome.run_id, out_dir)
    _say(console, markdown)
    _say(console, f"exported {counts} to {out_dir}")
    if args.recalibrate:
        controller = CanaryController(args.home / "policy.json")
        if controller.state.canary_version is not None:
            decision, stats = controller.decide(outcome.rows)
            console.print(f"canary {decision}: {stats}")
        else:
            target = config.targets.get("general", config.default_target)
            proposal = propose_threshold(outcome.rows, controller.state.threshold, target)
            console.print(f"threshold proposal: {proposal}")
            if proposal.proposed != proposal.current:
                version = controller.start(proposal.proposed, args.canary_share)
                console.print(f"canary {version} started at {args.canary_share:.0%} of traffic")
    if not args.no_mlflow:
        uri = args.mlflow_uri or local_tracking_uri(args.home)
        artifacts = [out_dir / n for n in ("report.md", "report.json", "failures.jsonl", "preferences.jsonl")]
        params = {**vars(config), "judge": args.judge}
        mlflow_id = log_run(uri, outcome.run_id, params, outcome.summary, outcome.report, artifacts)
        _say(console, f"MLflow run {mlflow_id} at {uri}")
    print(outcome.run_id)
    return 0


def _report_or_export(args: argparse.Namespace, store: Any, console: Console) -> int:
    from cloud_hub.evaluation.report import build_report, render_markdown
    from cloud_hub.evaluation.results import ResultStore, export_run

    results = ResultStore(store)
    run_id = args.run or results.latest_run()
    info = results.run_info(run_id) if run_id else None
    if run_id is None or info is None:
        console.print(f"no evaluation run {'found' if run_id is None else repr(run_id)} under {args.home}")
        return 2
    if args.eval_command == "export":
        out = args.out or args.home / "eval" / run_id
        print(json.dumps({"run_id": run_id, "out": str(out), **export_run(store, results, run_id, out)}))
        return 0
    params = info["params"]
    report = build_report(
        run_id, results.results(run_id), None, params.get("default_target", 0.8), params.get("min_n", 10)
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else render_markdown(report))
    return 0


def _stats(args: argparse.Namespace, store: Any, console: Console) -> int:
    from rich.table import Table

    from cloud_hub.telemetry.aggregates import aggregate

    by = tuple(d for d in args.by.split(",") if d)
    since = time.time() - args.since_hours * 3600 if args.since_hours else None
    try:
        rows = aggregate(store, by=by, window_s=args.window, since=since)
    except ValueError as exc:
        console.print(f"error: {exc}")
        return 2
    records = [
        {
            **row.key,
            "requests": row.requests,
            "errors": row.errors,
            "cost_usd": row.cost_usd,
            "cost_per_request": row.cost_per_request,
            "cache_hit_rate": row.cache_hit_rate,
            "fallback_rate": row.fallback_rate,
            "escalation_rate": row.escalation_rate,
            "regeneration_rate": row.regeneration_rate,
            "latency_p50_s": row.latency_p50_s,
            "latency_p95_s": row.latency_p95_s,
            "feedback_mean": row.feedback_mean,
        }
        for row in rows
    ]
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    table = Table(title=f"telemetry by {', '.join(by) or 'all'}")
    columns = list(records[0]) if records else ["requests"]
    for column in columns:
        table.add_column(column)
    for record in records:
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in record.values()))
    Console().print(table)
    return 0


def _calibrate(args: argparse.Namespace, console: Console) -> int:
    from cloud_hub.evaluation.calibration import calibrate
    from shared.paths import data_dir

    judge = _open_judge(args.judge)
    try:
        with _progress(console) as bar:
            task = bar.add_task(f"judging with {args.judge}", total=args.limit)
            result = calibrate(
                judge, data_dir(), args.limit, args.seed, progress=lambda d, t: bar.update(task, completed=d)
            )
    finally:
        judge.close()
    out = args.home / "eval" / f"judge-calibration-{args.judge}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"judge": args.judge, **result.to_dict()}, indent=2))
    print(json.dumps({"judge": args.judge, **result.to_dict()}, indent=2))
    return 0
