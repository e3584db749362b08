"""Thresholds for the hub's judges fitted on training pairs, and judge scores for another benchmark.

``fit_both`` chooses the pair head's and the LLM judge's thresholds together for the ``both``
judge (each must approve): the pair of thresholds with the most right approvals whose wrong ones
stay at the rate asked, on labelled pairs that must come from a training split, never from the
pairs the result is reported on. ``score_file`` scores a JSONL of pairs with the named judges and
writes one row per pair; ``edge-agent bench cache`` runs it as a process on the edge verifier's grey
zone (the edge never imports the hub), so the two benchmarks score with the same judge code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cloud_hub.cache.judge import AnswerJudge, JudgeItem
from shared.paraphrase import operating_point, read_jsonl

MIN_APPROVED = 20  # as ``operating_point``: fewer approvals say nothing about a wrong-approval rate


@dataclass(frozen=True)
class JointPoint:
    head: float
    llm: float
    approved: int
    false_rate: float
    recall: float


def fit_both(
    head: Sequence[float], llm: Sequence[float], labels: Sequence[int], max_false_rate: float
) -> JointPoint:
    """Thresholds (head, llm) with the most right approvals at ≤ ``max_false_rate`` wrong ones.

    Both scores' own values are the candidate thresholds; with no pair clean enough the point
    approves nothing (both thresholds above 1).
    """
    h, m = np.asarray(head, dtype=np.float64), np.asarray(llm, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    positives = max(int(y.sum()), 1)
    best, best_right = JointPoint(1.0 + 1e-9, 1.0 + 1e-9, 0, 0.0, 0.0), 0
    for th in np.unique(h):
        keep = np.flatnonzero(h >= th)
        # within the head's approvals, the LLM's threshold is a one-dimensional sweep
        order = keep[np.argsort(-m[keep], kind="stable")]
        n = np.arange(1, len(order) + 1)
        wrong = np.cumsum(1 - y[order])
        ok = np.flatnonzero((n >= MIN_APPROVED) & (wrong <= max_false_rate * n))
        if len(ok) == 0:
            continue
        k = int(ok.max())
        right = int(n[k] - wrong[k])
        if right > best_right:
            best_right = right
            best = JointPoint(float(th), float(m[order[k]]), int(n[k]), round(float(wrong[k]) / int(n[k]), 4),
                              round(right / positives, 4))  # fmt: skip
    return best


def alone_point(scores: Sequence[float], labels: Sequence[int], max_false_rate: float) -> dict[str, Any]:
    """One judge alone: its lowest threshold at ≤ ``max_false_rate`` wrong approvals."""
    point = operating_point(list(scores), list(labels), max_false_rate, MIN_APPROVED)
    return {"threshold": point.threshold, "approved": point.served, "false_rate": point.false_hit_rate,
            "recall": point.recall}  # fmt: skip


def score_file(judges: Sequence[AnswerJudge], src: Path, dst: Path, log: Any = None) -> dict[str, Any]:
    """Score every ``text_a``/``text_b`` row of ``src`` with each judge; one JSON row per pair to ``dst``.

    A row holds each judge's score and threshold under its name, so the reader applies any
    combination (``both``: every judge at its threshold) without loading a model itself.
    """
    rows = read_jsonl(src)
    items = [JudgeItem(str(r["text_a"]), str(r["text_b"]), str(r.get("answer", ""))) for r in rows]
    scores: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    for j in judges:
        t0 = time.perf_counter()
        got: list[float] = []
        for k, item in enumerate(items):
            got += j.score([item])
            if log is not None and (k + 1) % 25 == 0:
                log(f"  {j.name}: {k + 1}/{len(items)} in {time.perf_counter() - t0:.0f} s")
        scores[j.name] = got
        seconds[j.name] = round((time.perf_counter() - t0) / max(len(items), 1), 3)
    with dst.open("w", encoding="utf-8") as fh:
        for k in range(len(items)):
            fh.write(json.dumps({name: scores[name][k] for name in scores}) + "\n")
    return {
        "pairs": len(items),
        "judges": {j.name: {"threshold": j.threshold("general"), "seconds_per_pair": seconds[j.name]}
                   for j in judges},
    }  # fmt: skip
