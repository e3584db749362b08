"""``cloud-hub bench routing``: replay recorded model outcomes through the router, offline.

Without ``--dataset`` it runs the default suite over the data directory: RouteLLM's GSM8K, MMLU and
MT-Bench (contaminated prompts dropped; a fixed hash slice trains and calibrates, the rest is
reported), RouterBench's ARC-C, MBPP and Winogrande (11 models, real USD cost, 5-fold
cross-validation) and LLMRouter's set. ``--dataset PATH`` (repeatable) replays any file in the
RouterBench or RouteLLM layout; ``--train PATH`` (repeatable) names outcomes to train and calibrate
on instead of the hash slice. Output: a table per dataset, ``<out>/routing-<dataset>.json`` and
``.png``, and, as the last printed line, the last dataset's summary as one JSON object. Every run
also times classification + decision (``routing-latency.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cloud_hub.bench.agreement import applicable, evaluate_agreement
from cloud_hub.bench.routing_eval import Plan, evaluate
from cloud_hub.bench.routing_report import (
    agreement_summary,
    final_line,
    plot,
    pool_agreement,
    print_agreement,
    print_table,
    summarise,
)
from shared import paths
from shared.config import CostModel
from shared.routing.agreement import question_text
from shared.routing.calibration import ThresholdTable
from shared.routing.datasets import (
    GPT4,
    MIXTRAL,
    OutcomeTable,
    concat,
    drop_prompts,
    load_contaminated,
    load_outcomes,
)
from shared.routing.embed import (
    CachedEmbedder,
    TextEmbedder,
    default_cache_file,
    embedder_id,
    load_default_embedder,
)
from shared.routing.estimators import hash_folds, hash_unit
from shared.routing.heads import HEADS_DIR, THRESHOLDS_FILE, ClassifierHeads
from shared.routing.policy import RouteOption, RoutingPolicy, refine_with_confidence
from shared.taxonomy import Route, Tier

ROUTELLM = Path("routing/routellm/routellm/evals")
HELP = "replay recorded model outcomes through the router (cost-quality tables, JSON, PNG)"


@dataclass(frozen=True)
class Job:
    name: str
    path: Path
    contaminated: Path | None = None
    mode: str = "hash"  # "hash": calibrate on a hash slice | "cv": k-fold cross-validation


def default_suite(data: Path) -> list[Job]:
    rb = data / "routing" / "routerbench"
    return [
        Job(
            "gsm8k",
            data / ROUTELLM / "gsm8k/gsm8k_responses.csv",
            data / ROUTELLM / "gsm8k/contaminated_prompts.jsonl",
        ),
        Job("mmlu", data / ROUTELLM / "mmlu/responses", data / ROUTELLM / "mmlu/contaminated_prompts.jsonl"),
        Job(
            "mt_bench",
            data / ROUTELLM / "mt_bench",
            data / ROUTELLM / "mt_bench/contaminated_prompts.jsonl",
            "cv",
        ),
        Job("routerbench_arc_challenge", rb / "arc_challenge_train.csv", mode="cv"),
        Job("routerbench_mbpp", rb / "mbpp_train.csv", mode="cv"),
        Job("routerbench_winogrande", rb / "winograde_train.csv", mode="cv"),
        Job("llmrouter", data / "routing" / "llmrouter" / "train.json"),
    ]


# the edge's per-request routing work, timed without the embedding: three heads, the text rules,
# the confidence update and the policy decision
PROMPTS = (
    "Natalia sold clips to 48 of her friends in April, and then half as many in May. How many in total?",
    "Write a python function that returns the n-th Fibonacci number.",
    "Translate 'where is the station' into German.",
    "Which of these is a primary source for the French Revolution?\nA. a\nB. b\nC. c\nD. d",
)


@dataclass(frozen=True)
class LatencyReport:
    iterations: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def default_policy() -> RoutingPolicy:
    options = [
        RouteOption(Route.EDGE_LOCAL, "qwen2.5-coder-0.5b-instruct", CostModel(joules_per_token=0.05)),
        RouteOption(
            Route.HUB_OSS,
            "qwen2.5-coder-0.5b-instruct",
            CostModel(usd_per_1k_prompt=0.0001, usd_per_1k_completion=0.0002),
        ),
        RouteOption(
            Route.FRONTIER,
            "gpt-4-1106-preview",
            CostModel(usd_per_1k_prompt=0.01, usd_per_1k_completion=0.03),
        ),
    ]
    table = ThresholdTable.load(HEADS_DIR / THRESHOLDS_FILE)
    return RoutingPolicy(options, thresholds=table)


def measure(iterations: int = 3000, seed: int = 0) -> LatencyReport:
    heads = ClassifierHeads.load()
    policy = default_policy()
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(64, heads.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    tier_route = {
        Tier.EDGE.value: Route.EDGE_LOCAL,
        Tier.OSS.value: Route.HUB_OSS,
        Tier.FRONTIER.value: Route.FRONTIER,
    }
    samples = np.empty(iterations)
    for i in range(iterations + 200):
        prompt = PROMPTS[i % len(PROMPTS)]
        start = time.perf_counter_ns()
        c = heads.classify(vecs[i % len(vecs)], prompt)
        success = {tier_route[k]: v for k, v in c.success.items() if k in tier_route}
        success[Route.EDGE_LOCAL] = refine_with_confidence(success[Route.EDGE_LOCAL], 0.8)
        policy.decide(success, prompt_tokens=60, max_tokens=256, domain=c.domain, classification=c)
        elapsed = (time.perf_counter_ns() - start) / 1e6
        if i >= 200:  # the first calls warm caches and allocators
            samples[i - 200] = elapsed
    return LatencyReport(
        iterations,
        float(np.percentile(samples, 50)),
        float(np.percentile(samples, 99)),
        float(samples.max()),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", action="append", type=Path, default=[], help="outcome file/folder (repeatable)"
    )
    parser.add_argument(
        "--train", action="append", type=Path, default=[], help="outcomes to train on (repeatable)"
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="default: $EDGEROUTE_DATA_DIR")
    parser.add_argument("--out", type=Path, default=Path("bench-results/routing"), help="JSON + PNG folder")
    parser.add_argument(
        "--strong", default=None, help="strong model (default: GPT-4 if present, else the best)"
    )
    parser.add_argument(
        "--weak", default=None, help="weak model (default: Mixtral if present, else the cheapest)"
    )
    parser.add_argument(
        "--calib-fraction", type=float, default=0.5, help="hash slice used to train/calibrate"
    )
    parser.add_argument("--folds", type=int, default=5, help="folds for cross-validated datasets")
    parser.add_argument("--limit", type=int, default=0, help="keep only this many rows per dataset (0 = all)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--embedding-cache", type=Path, default=None, help="default: beside the models dir")
    parser.add_argument("--thresholds-out", type=Path, default=None, help="write the calibrated table (JSON)")
    parser.add_argument(
        "--no-agreement", action="store_true", help="skip the answer-agreement cascade replay"
    )
    parser.add_argument(
        "--agreement-margin",
        type=float,
        default=1.0,
        help="standard errors a cascade's calibration quality must clear its target by",
    )


def _pick(table: OutcomeTable, strong: str | None, weak: str | None) -> tuple[str, str, str]:
    cost = {m: table.mean_cost(m) for m in table.models}
    quality = {m: table.mean_score(m) for m in table.models}
    s = strong or (GPT4 if GPT4 in table.models else max(quality, key=lambda m: (quality[m], -cost[m])))
    cheapest = min(cost, key=lambda m: (cost[m], -quality[m]))
    w = weak or (MIXTRAL if MIXTRAL in table.models else cheapest)
    for m in (s, w):
        if m not in table.models:
            raise SystemExit(f"model {m!r} is not in {table.name}: {table.models}")
    return s, w, cheapest


def _limit(table: OutcomeTable, n: int) -> OutcomeTable:
    if n <= 0 or len(table) <= n:
        return table
    order = np.argsort([hash_unit(p, "edgeroute-limit") for p in table.prompts])[:n]
    return table.subset(np.sort(order))


def _load(job: Job, limit: int) -> OutcomeTable:
    table = load_outcomes(job.path)
    if job.contaminated is not None and job.contaminated.is_file():
        table = drop_prompts(table, load_contaminated(job.contaminated))
    return _limit(replace(table, name=job.name).complete(), limit)


def _align(train: list[OutcomeTable], models: list[str]) -> OutcomeTable:
    parts = []
    for t in train:
        missing = [m for m in models if m not in t.models]
        if missing:
            raise SystemExit(f"--train {t.name} lacks models {missing}")
        cols = [t.models.index(m) for m in models]
        parts.append(replace(t, models=list(models), scores=t.scores[:, cols], costs=t.costs[:, cols]))
    return concat(parts, "train").complete()


def _plans(job: Job, table: OutcomeTable, n_train: int, args: argparse.Namespace) -> list[Plan]:
    if n_train:  # rows [0, n_train) come from --train, the rest from the dataset
        return [Plan(np.arange(n_train), np.arange(n_train, len(table)))]
    if job.mode == "cv":
        folds = hash_folds(table.prompts, args.folds)
        return [Plan(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(args.folds)]
    calib = np.array([hash_unit(p) < args.calib_fraction for p in table.prompts])
    return [Plan(np.flatnonzero(calib), np.flatnonzero(~calib))]


def _agreement_plan(table: OutcomeTable, n_train: int, calib_fraction: float) -> Plan:
    """Calibration rows (``--train`` rows, else the hash slice) and held-back rows, even for CV jobs:
    a cascade is configured once, so it is judged on one clean split."""
    if n_train:
        return Plan(np.arange(n_train), np.arange(n_train, len(table)))
    calib = np.array([hash_unit(p) < calib_fraction for p in table.prompts])
    return Plan(np.flatnonzero(calib), np.flatnonzero(~calib))


def _embed(embedder: CachedEmbedder, texts: list[str], label: str, console: Console) -> NDArray[np.float32]:
    todo = embedder.missing(texts)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(f"embedding {label}", total=todo)
        x = embedder.embed(texts, progress=lambda n: bar.advance(task, n))
    embedder.flush()
    return x


def run_job(
    job: Job, train: list[OutcomeTable], embedder: CachedEmbedder, args: argparse.Namespace, console: Console
) -> dict[str, Any]:
    table = _load(job, args.limit)
    strong, weak, cheapest = _pick(table, args.strong, args.weak)
    n_train = 0
    if train:
        base = _align(train, table.models)
        n_train = len(base)
        table = concat([base, table], job.name)
    # few-shot prompts are embedded by their own question: their shared examples would swamp it
    x = _embed(embedder, [question_text(p) for p in table.prompts], job.name, console)
    with console.status(f"[bold]{job.name}: training, calibrating, replaying"):
        results, thresholds, test = evaluate(table, x, _plans(job, table, n_train, args), strong, weak)
    summary = summarise(job.name, results, test, strong, weak, cheapest)
    print_table(console, summary)
    if not args.no_agreement and applicable(table, strong):
        with console.status(f"[bold]{job.name}: choosing cascades on calibration rows"):
            report = evaluate_agreement(
                table,
                x,
                _agreement_plan(table, n_train, args.calib_fraction),
                strong,
                margin=args.agreement_margin,
            )
        summary["agreement"] = agreement_summary(report)
        print_agreement(console, summary["agreement"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"routing-{job.name}.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    if not args.no_plots:
        plot(summary, args.out / f"routing-{job.name}.png")
    if args.thresholds_out is not None:
        thresholds.save(args.thresholds_out.parent / f"{args.thresholds_out.stem}-{job.name}.json")
    return summary


def run(args: argparse.Namespace, embedder: TextEmbedder | None = None) -> int:
    console = Console(stderr=True, width=150)
    data = args.data_dir or paths.data_dir()
    jobs = (
        [Job(p.stem if p.is_file() else p.name, p, mode="hash") for p in args.dataset]
        if args.dataset
        else default_suite(data)
    )
    train = [_limit(load_outcomes(p).complete(), args.limit) for p in args.train]
    cache_file = args.embedding_cache or default_cache_file()
    if embedder is None:
        cached = CachedEmbedder(load_default_embedder(), cache_file, embedder_id())
    else:
        cached = CachedEmbedder(embedder, cache_file, type(embedder).__name__)
    lat = measure()
    console.print(
        f"[bold]classification + decision[/] (no embedding): p50 {lat.p50_ms:.3f} ms, "
        f"p99 {lat.p99_ms:.3f} ms over {lat.iterations} requests (goal: 1 / 5 ms)"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "routing-latency.json").write_text(json.dumps(asdict(lat)) + "\n", encoding="utf-8")
    lines, cascades = [], []
    try:
        for job in jobs:
            summary = run_job(job, train, cached, args, console)
            lines.append(final_line(summary))
            if "agreement" in summary:
                cascades.append(summary["agreement"])
    finally:
        cached.close()
    if len(cascades) > 1:
        pooled = pool_agreement(cascades)
        print_agreement(console, pooled)
        (args.out / "routing-agreement.json").write_text(
            json.dumps({"pooled": pooled, "datasets": cascades}, indent=1) + "\n", encoding="utf-8"
        )
    for line in lines:
        print(json.dumps(line), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cloud-hub bench routing", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
