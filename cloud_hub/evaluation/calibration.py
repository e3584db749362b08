"""Measure a judge against GPT-4's MT-Bench judgements (the data directory's ``judgements.jsonl``).

Each record holds the exact prompt GPT-4 judged and its 1–10 score. We give our judge the same
material and report rank and linear correlation, mean absolute error, agreement within one and two
points, and pass/fail agreement (score ≥ 7) with Cohen's kappa, on a sample balanced between
GPT-4 passes and fails (GPT-4 rates 88% of these answers 7 or more, so an unbalanced sample
would reward a judge that always says "good").
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cloud_hub.evaluation.judge import RUBRIC_SYSTEM, Judge

JUDGEMENTS = Path("routing/routellm/routellm/evals/mt_bench/judgements.jsonl")


@dataclass(frozen=True, slots=True)
class Agreement:
    n: int
    parsed: int
    pearson: float
    spearman: float
    mae: float
    within_1: float
    within_2: float
    pass_agreement: float
    kappa: float
    judge_mean: float
    gpt4_mean: float
    # the judge's own pass mark that best reproduces GPT-4's pass/fail (balanced accuracy): a
    # small judge's scale is compressed, so its 7 is not GPT-4's 7
    best_pass_at: float = 7.0
    best_balanced_accuracy: float = 0.5
    pairs: tuple[tuple[float, float], ...] = ()  # (judge, GPT-4) per item, to re-derive figures

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_judgements(data_dir: Path, limit: int, seed: int = 0, pass_at: float = 7.0) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (data_dir / JUDGEMENTS).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if isinstance(r.get("score"), int | float) and 1 <= r["score"] <= 10]
    rng = random.Random(seed)
    good = [r for r in rows if r["score"] >= pass_at]
    bad = [r for r in rows if r["score"] < pass_at]
    rng.shuffle(good)
    rng.shuffle(bad)
    half = limit // 2
    picked = bad[:half] + good[: limit - min(half, len(bad))]
    rng.shuffle(picked)
    return picked


def _ranks(xs: list[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def pearson(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    if n < 2:
        return float("nan")
    mx, my = sum(xs) / n, sum(ys) / n
    sx = math.sqrt(sum((x - mx) ** 2 for x in xs))
    sy = math.sqrt(sum((y - my) ** 2 for y in ys))
    if sx == 0 or sy == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / (sx * sy)


def balanced_accuracy(judge_scores: list[float], gpt4_pass: list[bool], cut: float) -> float:
    pos = [s for s, g in zip(judge_scores, gpt4_pass, strict=True) if g]
    neg = [s for s, g in zip(judge_scores, gpt4_pass, strict=True) if not g]
    if not pos or not neg:
        return 0.5
    return (sum(s >= cut for s in pos) / len(pos) + sum(s < cut for s in neg) / len(neg)) / 2


def best_cut(judge_scores: list[float], gpt4_pass: list[bool]) -> tuple[float, float]:
    cuts = sorted(set(judge_scores))
    if not cuts:
        return 7.0, 0.5
    scored = [(balanced_accuracy(judge_scores, gpt4_pass, c), c) for c in cuts]
    accuracy, cut = max(scored)
    return cut, accuracy


def agreement(judge_scores: list[float], gpt4: list[float], pass_at: float = 7.0, n: int = 0) -> Agreement:
    m = len(judge_scores)
    jp = [s >= pass_at for s in judge_scores]
    gp = [s >= pass_at for s in gpt4]
    po = sum(a == b for a, b in zip(jp, gp, strict=True)) / m if m else 0.0
    pj, pg = (sum(jp) / m, sum(gp) / m) if m else (0.0, 0.0)
    pe = pj * pg + (1 - pj) * (1 - pg)
    diffs = [abs(a - b) for a, b in zip(judge_scores, gpt4, strict=True)]
    cut, accuracy = best_cut(judge_scores, gp)
    return Agreement(
        n=n or m,
        parsed=m,
        pearson=pearson(judge_scores, gpt4),
        spearman=pearson(_ranks(judge_scores), _ranks(gpt4)),
        mae=sum(diffs) / m if m else float("nan"),
        within_1=sum(d <= 1 for d in diffs) / m if m else 0.0,
        within_2=sum(d <= 2 for d in diffs) / m if m else 0.0,
        pass_agreement=po,
        kappa=(po - pe) / (1 - pe) if pe < 1 else 0.0,
        judge_mean=sum(judge_scores) / m if m else float("nan"),
        gpt4_mean=sum(gpt4) / m if m else float("nan"),
        best_pass_at=cut,
        best_balanced_accuracy=accuracy,
        pairs=tuple(zip(judge_scores, gpt4, strict=True)),
    )


def calibrate(
    judge: Judge,
    data_dir: Path,
    limit: int = 40,
    seed: int = 0,
    pass_at: float = 7.0,
    progress: Callable[[int, int], None] | None = None,
) -> Agreement:
    rows = load_judgements(data_dir, limit, seed, pass_at)
    ours: list[float] = []
    theirs: list[float] = []
    for i, row in enumerate(rows):
        score = judge.rating(RUBRIC_SYSTEM, row["user_prompt"])
        if score is not None:
            ours.append(score)
            theirs.append(float(row["score"]))
        if progress is not None:
            progress(i + 1, len(rows))
    return agreement(ours, theirs, pass_at, n=len(rows))
