"""``cloud-hub bench judge``: precision and recall of the hub's cache judges on labelled pairs.

Pairs are the candidates an edge could send (cosine ≥ 0.8) from QQP eval and MRPC val, or from
``--pairs`` files (JSONL of text_a, text_b, label; ``category`` is used as the domain when present).
The pair head is scored on every such pair; the LLM judge (a GGUF model on llama.cpp, scored from
its yes/no logits) on a seeded sample of ``--llm-pairs`` per set, with the head on the same sample
for comparison. Per-domain thresholds are then fitted from reviewed verdicts in the audit format:
``--reviewed PATH``, else the labels of half of each set stand in for a reviewer's verdicts, with
the domain being the set, and the fit is measured on the other half. The last line is one JSON object.

``--score-in PATH --score-out PATH [--fit-on PATH]`` only scores: the trap guard, the pair head and
(unless ``--llm-pairs 0``) the LLM judge on each pair, one JSON row per pair, after fitting the
LLM's and ``both``'s thresholds on the ``--fit-on`` pairs. ``edge-agent bench cache quality
--hub-judge llm`` runs it on the edge's grey zone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from cloud_hub.bench.judge_fit import alone_point, fit_both, score_file
from cloud_hub.cache.judge import AnswerJudge, Reviewed, fit_domain_thresholds, read_reviewed
from cloud_hub.cache.judge_prompts import DEFAULT_PROMPT, PROMPTS
from shared import paths
from shared.cache_judge import JudgeHead
from shared.embedding import OnnxEmbedder
from shared.pair_vectors import pair_vectors
from shared.paraphrase import Pair, mrpc, operating_point, qqp_split, read_jsonl
from shared.routing.embed import EMBEDDING_MODEL

HELP = "precision and recall of the hub's semantic-cache judges on labelled pairs"
MIN_COSINE = 0.8
MAX_FALSE_RATE = 0.02


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", type=Path, action="append", help="JSONL(.gz) of text_a/text_b/label")
    parser.add_argument("--judge", type=Path, help="pair-head weights (default: shipped)")
    parser.add_argument("--llm-model", default="qwen2.5-coder-0.5b-instruct", help="GGUF model name or path")
    parser.add_argument("--llm-pairs", type=int, default=100, help="LLM judge: pairs per set (0: skip)")
    parser.add_argument("--llm-threads", type=int, default=2)
    parser.add_argument(
        "--llm-prompt", choices=sorted(PROMPTS), default=DEFAULT_PROMPT, help="LLM judge prompt"
    )
    parser.add_argument("--score-in", type=Path, help="score these pairs only (JSONL), rows to --score-out")
    parser.add_argument("--score-out", type=Path, help="with --score-in: one row of judge scores per pair")
    parser.add_argument(
        "--fit-on",
        type=Path,
        help="with --score-in: labelled training pairs to fit the LLM's and both's thresholds",
    )
    parser.add_argument("--reviewed", type=Path, help="reviewed verdicts (audit JSONL) to fit domains on")
    parser.add_argument("--max-false-rate", type=float, default=MAX_FALSE_RATE)
    parser.add_argument("--seed", type=int, default=0)


def figures(
    scores: list[float] | np.ndarray[Any, Any], labels: list[int], threshold: float
) -> dict[str, Any]:
    """Precision and recall at ``threshold``, the best point at ≤2% false approvals, and AUC."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    approved = s >= threshold
    tp = int((approved & (y == 1)).sum())
    best = operating_point(list(s), list(y), MAX_FALSE_RATE)
    pos, neg = s[y == 1], s[y == 0]
    # AUC by ranks: the chance a reusable pair scores above a non-reusable one
    ranks = np.argsort(np.argsort(np.concatenate([pos, neg]), kind="stable"), kind="stable") + 1
    auc = (ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / max(len(pos) * len(neg), 1)
    return {
        "pairs": len(y),
        "positives": int(y.sum()),
        "threshold": round(threshold, 6),
        "approved": int(approved.sum()),
        "precision": round(tp / int(approved.sum()), 4) if approved.any() else None,
        "recall": round(tp / max(int(y.sum()), 1), 4),
        "best_at_2pct": {"threshold": best.threshold, "recall": best.recall, "approved": best.served,
                         "false_hit_rate": best.false_hit_rate},
        "recall_at": {f"{r:g}": operating_point(list(s), list(y), r).recall for r in (0.05, 0.1)},
        "auc": round(float(auc), 4),
    }  # fmt: skip


def load_sets(args: argparse.Namespace) -> dict[str, list[tuple[Pair, str]]]:
    if not args.pairs:
        return {
            "qqp_eval": [(p, "qqp") for p in qqp_split("eval")],
            "mrpc_val": [(p, "mrpc") for p in mrpc("val")],
        }
    out = {}
    for path in args.pairs:
        rows = read_jsonl(path)
        out[str(path)] = [
            (
                Pair(str(r["text_a"]), str(r["text_b"]), int(str(r["label"]))),
                str(r.get("category", path.stem)),
            )
            for r in rows
        ]
    return out


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    if args.score_in is not None:
        return score_only(args, console)
    head = JudgeHead.load(args.judge)
    head_name = f"pair-head:{head.identity}"
    result: dict[str, Any] = {"head": {"name": head_name, "threshold": head.threshold}, "sets": {}}
    rng = random.Random(args.seed)
    llm = _open_llm(args, console) if args.llm_pairs > 0 else None
    verdicts: list[tuple[Reviewed, int]] = []  # (as a reviewer would have labelled it, half)
    with OnnxEmbedder(paths.models_dir() / EMBEDDING_MODEL) as embedder:
        for name, rows in load_sets(args).items():
            pairs = [p for p, _ in rows]
            va, vb = pair_vectors(embedder, pairs)
            near = np.flatnonzero(np.einsum("ij,ij->i", va, vb) >= MIN_COSINE)
            sub = [pairs[i] for i in near]
            probs = head.probabilities(va[near], vb[near], [p.a for p in sub], [p.b for p in sub])
            labels = [p.label for p in sub]
            row: dict[str, Any] = {"candidates": len(sub), "head": figures(probs, labels, head.threshold)}
            for i, p, pr in zip(near, sub, probs, strict=True):
                half = hashlib.sha256(f"{p.a}\x00{p.b}".encode()).digest()[0] % 2
                verdicts.append((Reviewed(rows[i][1], head_name, p.a, p.b, float(pr), bool(p.label)), half))
            if llm is not None:
                picks = rng.sample(range(len(sub)), min(args.llm_pairs, len(sub)))
                row["llm"] = _llm_figures(llm, sub, probs, head.threshold, picks, console)
            console.print(f"[bold]{name}[/]", row)
            result["sets"][name] = row
    if llm is not None:
        llm.close()
    result["domains"] = _domain_fit(args, head, head_name, verdicts)
    console.print(result["domains"])
    print(json.dumps(result))
    return 0


def _open_llm(args: argparse.Namespace, console: Console) -> Any:
    from cloud_hub.cache.judge_llm import LlmJudge

    model = Path(args.llm_model)
    path = model if model.exists() else paths.models_dir() / args.llm_model
    console.print(f"LLM judge: {path}")
    return LlmJudge(path, n_threads=args.llm_threads, prompt=args.llm_prompt)


def score_only(args: argparse.Namespace, console: Console) -> int:
    """``--score-in``: the pair head and (unless ``--llm-pairs 0``) the LLM judge on given pairs.

    With ``--fit-on``, the training pairs are scored first and the LLM's threshold (alone, and
    with the head for ``both``) is fitted on them at ``--max-false-rate``; the pairs of
    ``--score-in`` are never used for fitting.
    """
    from cloud_hub.cache.judge_guards import TrapGuard
    from cloud_hub.cache.judge_head import HeadJudge

    if args.score_out is None:
        raise SystemExit("--score-in needs --score-out")
    llm = _open_llm(args, console) if args.llm_pairs > 0 else None
    judges: list[AnswerJudge] = [HeadJudge.load(args.judge), *([llm] if llm is not None else []), TrapGuard()]
    try:
        result: dict[str, Any] = {}
        if args.fit_on is not None:
            fit_scores = args.score_out.with_suffix(".fit.jsonl")
            result["fit"] = score_file(judges, args.fit_on, fit_scores, console.print)
            result["fitted"] = _fit(judges, args.fit_on, fit_scores, args.max_false_rate)
        result["scored"] = score_file(judges, args.score_in, args.score_out, console.print)
    finally:
        if llm is not None:
            llm.close()
    print(json.dumps(result))
    return 0


def _fit(judges: list[AnswerJudge], pairs: Path, scores: Path, max_false_rate: float) -> dict[str, Any]:
    """Each judge's threshold on the training pairs the trap guard passes (the service's order)."""
    rows = read_jsonl(scores)
    guard = judges[-1].name
    passed = [float(str(r[guard])) >= judges[-1].threshold("general") for r in rows]
    labels = [int(str(r["label"])) for r, ok in zip(read_jsonl(pairs), passed, strict=True) if ok]
    rows = [r for r, ok in zip(rows, passed, strict=True) if ok]
    head = [float(str(r[judges[0].name])) for r in rows]
    out: dict[str, Any] = {"pairs": len(labels), "positives": sum(labels),
                           "head": alone_point(head, labels, max_false_rate)}  # fmt: skip
    if len(judges) > 2:
        llm = [float(str(r[judges[1].name])) for r in rows]
        out["llm"] = alone_point(llm, labels, max_false_rate)
        out["both"] = fit_both(head, llm, labels, max_false_rate).__dict__
    out["names"] = {
        "head": judges[0].name,
        "llm": judges[1].name if len(judges) > 2 else None,
        "guard": guard,
    }
    return out


def _llm_figures(
    llm: Any, sub: list[Pair], head_probs: np.ndarray[Any, Any], head_threshold: float, picks: list[int],
    console: Console,
) -> dict[str, Any]:  # fmt: skip
    from cloud_hub.cache.judge import JudgeItem

    t0 = time.perf_counter()
    scores: list[float] = []
    for k, i in enumerate(picks):
        scores += llm.score([JudgeItem(sub[i].a, sub[i].b)])
        if (k + 1) % 20 == 0:
            console.print(f"  llm judge: {k + 1}/{len(picks)} in {time.perf_counter() - t0:.0f} s")
    elapsed = time.perf_counter() - t0
    labels = [sub[i].label for i in picks]
    return {
        "judge": llm.name,
        "seconds_per_pair": round(elapsed / max(len(picks), 1), 3),
        "figures": figures(scores, labels, llm.threshold("general")),
        "head_on_same_pairs": figures(head_probs[picks], labels, head_threshold),
    }


def _domain_fit(
    args: argparse.Namespace, head: JudgeHead, name: str, verdicts: list[tuple[Reviewed, int]]
) -> dict[str, Any]:
    """Fit per-domain thresholds on reviewed verdicts; measure them on the held-out half."""
    if args.reviewed is not None:
        fitted = fit_domain_thresholds(read_reviewed(args.reviewed), name, args.max_false_rate)
        return {"source": str(args.reviewed), "thresholds": fitted}
    fit = [r for r, half in verdicts if half == 0]
    test = [r for r, half in verdicts if half == 1]
    fitted = fit_domain_thresholds(fit, name, args.max_false_rate)
    out: dict[str, Any] = {"source": "labels of one half of each set", "thresholds": fitted, "held_out": {}}
    for domain in sorted({r.domain for r in test}):
        rows = [r for r in test if r.domain == domain]
        scores, labels = [r.probability for r in rows], [int(r.correct) for r in rows]
        out["held_out"][domain] = {
            "default": figures(scores, labels, head.threshold),
            "fitted": figures(scores, labels, fitted.get(domain, head.threshold)),
        }
    return out
