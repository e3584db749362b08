"""Edge + the hub's LLM judge on labelled pairs, from a bounded sample of the edge's grey zone.

An LLM judge takes seconds a pair on two cores, so it sees at most ``--judge-pairs`` grey-zone
candidates of each set, drawn at random; its approvals stand for the whole grey zone, weighted by
(grey candidates / sampled), and the report says how many it saw. Its thresholds (alone, and with
the pair head for ``both``) are fitted on as many grey candidates of the QQP *train* split at
``MAX_FALSE_RATE``, never on the pairs reported. Scoring and fitting run in the hub's own code,
``cloud-hub bench judge --score-in``, as a separate process: the edge never imports the hub.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.bench.cache_quality import MAX_FALSE_RATE, MIN_SERVED, edge_verdicts
from edge_agent.cache.verifier import Verdict, Verifier
from shared.paraphrase import Pair

Labels = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class GreySample:
    """A set's edge decisions and the grey candidates drawn for the judge."""

    labels: Labels
    accepted: Bools
    grey: Bools
    picks: npt.NDArray[np.int64]  # indices into the set, all grey


def grey_sample(
    verifier: Verifier, pairs: Sequence[Pair], cos: npt.NDArray[Any], n: int, seed: int
) -> GreySample:
    verdicts, _ = edge_verdicts(verifier, pairs, cos)
    accepted = np.asarray([v is Verdict.ACCEPT for v in verdicts], dtype=bool)
    grey = np.asarray([v is Verdict.GREY for v in verdicts], dtype=bool)
    idx = [int(i) for i in np.flatnonzero(grey)]
    picks = sorted(random.Random(seed).sample(idx, min(n, len(idx))))
    labels = np.fromiter((p.label for p in pairs), dtype=np.int64, count=len(pairs))
    return GreySample(labels, accepted, grey, np.asarray(picks, dtype=np.int64))


def write_pairs(path: Path, pairs: Sequence[Pair], picks: Sequence[int]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for i in picks:
            p = pairs[i]
            fh.write(json.dumps({"text_a": p.a, "text_b": p.b, "label": p.label}) + "\n")


def hub_scores(
    fit_path: Path, score_path: Path, out_path: Path, args: argparse.Namespace
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Run the hub's judges on ``score_path`` with thresholds fitted on ``fit_path``."""
    cmd = [str(Path(sys.executable).with_name("cloud-hub")), "bench", "judge", "--score-in", str(score_path),
           "--score-out", str(out_path), "--fit-on", str(fit_path), "--llm-model", args.hub_judge_model,
           "--llm-threads", str(args.judge_threads), "--max-false-rate", str(MAX_FALSE_RATE)]  # fmt: skip
    if args.hub_judge_prompt:
        cmd += ["--llm-prompt", args.hub_judge_prompt]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, check=True)
    summary: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    rows = [json.loads(line) for line in out_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return summary, rows


def approvals(rows: Sequence[dict[str, float]], fitted: dict[str, Any], judge: str) -> Bools:
    """Which scored rows the fitted ``judge`` ("llm", "both", "head") approves, after the trap guard."""
    names = fitted["names"]
    head = np.asarray([r[names["head"]] for r in rows])
    llm = np.asarray([r[names["llm"]] for r in rows])
    # the hub's trap guard runs first; its score is 0 on a trap, 1 otherwise
    passed = np.asarray([r[names["guard"]] >= 0.5 for r in rows], dtype=bool)
    if judge == "both":
        ok = (head >= fitted["both"]["head"]) & (llm >= fitted["both"]["llm"])
    else:
        ok = (llm if judge == "llm" else head) >= fitted[judge]["threshold"]
    return np.asarray(passed & ok, dtype=bool)


def sampled_figures(
    s: GreySample, approved: Bools, scores: npt.NDArray[np.float64] | None = None
) -> dict[str, Any]:
    """Edge + judge on the whole set, the judge's approvals on the sample standing for the grey zone."""
    w = int(s.grey.sum()) / max(len(s.picks), 1)
    y = s.labels
    base_hits, base_right = int(s.accepted.sum()), int((s.accepted & (y == 1)).sum())
    positives = max(int(y.sum()), 1)
    ys = y[s.picks]
    right = int((approved & (ys == 1)).sum())
    wrong = int((approved & (ys == 0)).sum())
    hits = base_hits + w * (right + wrong)
    out: dict[str, Any] = {
        "judge_calls": len(s.picks),
        "grey": int(s.grey.sum()),
        "hits": round(hits, 1),
        "false_hit_rate": round(w * wrong / hits, 4) if hits else 0.0,
        "recall": round((base_right + w * right) / positives, 4),
        "judge_on_sample": {
            "approved": right + wrong,
            "precision": round(right / (right + wrong), 4) if right + wrong else None,
            "recall": round(right / max(int(ys.sum()), 1), 4),
        },
    }
    if scores is not None:  # the best point of this judge's ranking at ≤2%, read off the same sample
        order = np.argsort(-scores, kind="stable")
        n_right = np.cumsum(ys[order] == 1)
        n_wrong = np.cumsum(ys[order] == 0)
        served = base_hits + w * (n_right + n_wrong)
        wrong_all = w * n_wrong + (base_hits - base_right)
        ok = np.flatnonzero((served >= MIN_SERVED) & (wrong_all <= MAX_FALSE_RATE * served))
        if len(ok):
            k = int(ok.max())
            out["best_at_2pct"] = {
                "threshold": round(float(scores[order[k]]), 6),
                "hits": round(float(served[k]), 1),
                "false_hit_rate": round(float(wrong_all[k] / served[k]), 4),
                "recall": round(float((base_right + w * n_right[k]) / positives), 4),
            }
        else:
            out["best_at_2pct"] = {"threshold": None, "hits": 0, "false_hit_rate": 0.0, "recall": 0.0}
    return out


def train_grey(verifier: Verifier, embedder: Any, n: int, seed: int) -> tuple[list[Pair], list[int]]:
    """``n`` grey candidates of the QQP train split (vectors shared with the verifier's fit)."""
    from shared.pair_vectors import pair_vectors
    from shared.paraphrase import mrpc, qqp_split

    qqp = qqp_split("train")
    va, vb = pair_vectors(embedder, qqp + mrpc("train"))  # the fit's cache file holds both
    cos = np.einsum("ij,ij->i", va[: len(qqp)], vb[: len(qqp)])
    return qqp, [int(i) for i in grey_sample(verifier, qqp, cos, n, seed).picks]


def llm_quality(
    args: argparse.Namespace,
    verifier: Verifier,
    embedder: Any,
    sets: dict[str, tuple[list[Pair], npt.NDArray[Any]]],
    tmp: Path,
) -> dict[str, Any]:
    """Edge + LLM judge and edge + both on each set, thresholds fitted on QQP train grey pairs."""
    train, train_picks = train_grey(verifier, embedder, args.judge_pairs, args.seed)
    write_pairs(tmp / "fit.jsonl", train, train_picks)
    samples = {name: grey_sample(verifier, pairs, cos, args.judge_pairs, args.seed)
               for name, (pairs, cos) in sets.items()}  # fmt: skip
    everything: list[Pair] = []
    spans: dict[str, tuple[int, int]] = {}
    for name, s in samples.items():
        pairs = sets[name][0]
        spans[name] = (len(everything), len(everything) + len(s.picks))
        everything += [pairs[i] for i in s.picks]
    write_pairs(tmp / "score.jsonl", everything, range(len(everything)))
    summary, rows = hub_scores(tmp / "fit.jsonl", tmp / "score.jsonl", tmp / "scores.jsonl", args)
    fitted = summary["fitted"]
    out: dict[str, Any] = {"fit": fitted, "judges": summary["scored"]["judges"], "sets": {}}
    for name, s in samples.items():
        lo, hi = spans[name]
        got = rows[lo:hi]
        llm = np.asarray([r[fitted["names"]["llm"]] for r in got], dtype=np.float64)
        out["sets"][name] = {
            "llm": sampled_figures(s, approvals(got, fitted, "llm"), llm),
            "both": sampled_figures(s, approvals(got, fitted, "both")),
            "head_on_sample": sampled_figures(s, approvals(got, fitted, "head")),
        }
    return out
