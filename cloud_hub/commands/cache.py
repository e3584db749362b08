"""``cloud-hub cache judge sample|fit``: the hub judge's side of the audit loop.

``sample`` writes a sample of the verdicts the judge gave edges' grey-zone candidates, one row per
verdict and judge, in the edge audit's JSONL format with ``correct`` left null for a reviewer.
``fit`` reads reviewed rows (``correct`` true/false) and sets each judge's per-domain threshold to
the lowest score whose reviewed approvals keep wrong ones at ``--max-false-rate``; a domain with too
few reviews keeps its default. The thresholds go to ``<home>/judge_thresholds.json``, which a
running hub re-reads before its next verdict.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path

from cloud_hub.cache.judge import MIN_REVIEWED, ReviewError, fit_domain_thresholds, read_reviewed
from cloud_hub.cache.judging import THRESHOLDS_FILE, save_thresholds
from cloud_hub.cache.store import GlobalCacheStore
from shared.config import HubSettings, load_settings

HELP = "the global cache's judge: sample its verdicts for review, fit its thresholds from reviews"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="cache_command", required=True)
    judge = sub.add_parser("judge", help="the judge of edges' grey-zone candidates")
    judge_sub = judge.add_subparsers(dest="judge_command", required=True)
    sample = judge_sub.add_parser("sample", help="write judged pairs for review (JSONL)")
    sample.add_argument("--out", type=Path, required=True)
    sample.add_argument("-n", type=int, default=200, help="verdicts to sample (default 200)")
    sample.add_argument("--seed", type=int, default=0)
    fit = judge_sub.add_parser("fit", help="per-domain judge thresholds from reviewed verdicts")
    fit.add_argument("--reviews", type=Path, required=True, help="reviewed JSONL (correct: true/false)")
    fit.add_argument("--max-false-rate", type=float, default=0.02)
    fit.add_argument("--min-reviewed", type=int, default=MIN_REVIEWED)
    for p in (sample, fit):
        p.add_argument("--home", type=Path, help="hub home (default ~/.edgeroute/hub)")
        p.add_argument("--config", type=Path, help="YAML file with HubSettings")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(HubSettings, yaml_file=args.config, home=args.home)
    if args.judge_command == "sample":
        return _sample(settings, args)
    return _fit(settings, args)


def _sample(settings: HubSettings, args: argparse.Namespace) -> int:
    path = settings.global_cache.path or settings.home / "global_cache.db"
    store = GlobalCacheStore(path)
    try:
        judged = store.judged(max(args.n * 20, 1000))
    finally:
        store.close()
    picks = random.Random(args.seed).sample(judged, min(args.n, len(judged)))
    with args.out.open("w", encoding="utf-8") as fh:
        for row in picks:
            for judge, score in sorted(row.scores.items()):
                fh.write(json.dumps({
                    "domain": row.domain, "verifier": judge, "cached": row.cached, "query": row.query,
                    "probability": score, "approved": row.approved, "correct": None,
                }) + "\n")  # fmt: skip
    print(f"wrote {len(picks)} verdicts to {args.out}")
    return 0


def _fit(settings: HubSettings, args: argparse.Namespace) -> int:
    try:
        rows = read_reviewed(args.reviews)
    except (OSError, ReviewError) as exc:
        print(f"error: {exc}")
        return 2
    by_judge = defaultdict(list)
    for row in rows:
        by_judge[row.judge].append(row)
    if not by_judge:
        print(f"error: {args.reviews} holds no reviewed verdict (every `correct` is null)")
        return 2
    fitted = {
        judge: fit_domain_thresholds(got, judge, args.max_false_rate, min_reviewed=args.min_reviewed)
        for judge, got in sorted(by_judge.items())
    }
    settings.home.mkdir(parents=True, exist_ok=True)
    target = settings.home / THRESHOLDS_FILE
    save_thresholds(target, fitted)
    for judge, thresholds in fitted.items():
        kept = ", ".join(f"{d}={t:.4f}" for d, t in thresholds.items()) or "none (too few reviews)"
        print(f"{judge}: {kept}")
    print(f"thresholds written to {target}")
    return 0
