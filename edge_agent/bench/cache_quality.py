"""Quality of the semantic cache on labelled pairs: the edge's verifier alone, and with the hub's judge.

``text_a`` is the cached question and ``text_b`` the new one. The edge serves what its verifier
accepts at the shipped operating point; the grey zone goes to the hub's judge (the pair head in
``shared.cache_judge``, the same weights the hub runs), whose approvals are served the next time.
Each is reported at its shipped threshold and at the best point with at most ``MAX_FALSE_RATE``
false hits, read off the same pairs (what the ranking can do, not what a shipped point does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.cache.training import FRONTIER_RATES, frontier
from edge_agent.cache.verifier import Verdict, Verifier
from shared.cache_judge import JudgeHead
from shared.paraphrase import Pair, read_jsonl

BASELINE_THRESHOLD = 0.8
MAX_FALSE_RATE = 0.02
MIN_SERVED = 20  # fewer served pairs than this say nothing about a false-hit rate

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class PairSet:
    pairs: list[Pair]
    categories: list[str] | None = None  # from a ``category`` field, when the file has one


def load_set(path: Path) -> PairSet:
    """A JSONL(.gz) of ``text_a``/``text_b``/``label`` objects; other fields are allowed."""
    rows = read_jsonl(path)
    pairs = [Pair(str(r["text_a"]), str(r["text_b"]), int(str(r["label"]))) for r in rows]
    has_category = any("category" in r for r in rows)
    categories = [str(r.get("category", "")) for r in rows] if has_category else None
    return PairSet(pairs, categories)


def stats(served: Bools, labels: npt.NDArray[np.int64]) -> dict[str, Any]:
    hits = int(served.sum())
    wrong = int((served & (labels == 0)).sum())
    positives = int(labels.sum())
    return {
        "hits": hits,
        "false_hit_rate": round(wrong / hits, 4) if hits else 0.0,
        "recall": round((hits - wrong) / positives, 4) if positives else 0.0,
    }


def best_point(
    scores: Floats, labels: npt.NDArray[np.int64], base: Bools | None = None, max_rate: float = MAX_FALSE_RATE
) -> dict[str, Any]:
    """Best recall with at most ``max_rate`` false hits over thresholds on ``scores``.

    ``base`` pairs are served whatever the threshold (the edge's own hits under a judge sweep);
    pairs scored -inf are never served.
    """
    always = np.zeros(len(labels), dtype=bool) if base is None else base
    order = np.argsort(-scores, kind="stable")
    order = order[np.isfinite(scores[order]) & ~always[order]]
    n0, tp0 = int(always.sum()), int((always & (labels == 1)).sum())
    n = n0 + np.arange(1, len(order) + 1)
    tp = tp0 + np.cumsum(labels[order])
    ok = np.flatnonzero((n >= MIN_SERVED) & ((n - tp) <= max_rate * n))
    positives = max(int(labels.sum()), 1)
    if len(ok) == 0:
        if n0 >= MIN_SERVED and (n0 - tp0) <= max_rate * n0:
            return {"threshold": None, "hits": n0, "false_hit_rate": round(1 - tp0 / n0, 4),
                    "recall": round(tp0 / positives, 4)}  # fmt: skip
        return {"threshold": None, "hits": 0, "false_hit_rate": 0.0, "recall": 0.0}
    k = int(ok.max())
    return {
        "threshold": round(float(scores[order[k]]), 6),
        "hits": int(n[k]),
        "false_hit_rate": round(1 - float(tp[k]) / float(n[k]), 4),
        "recall": round(float(tp[k]) / positives, 4),
    }


def edge_verdicts(
    verifier: Verifier, pairs: Sequence[Pair], cos: npt.NDArray[Any]
) -> tuple[list[Verdict], Floats]:
    """Per pair: the verdict at the shipped point and the probability (-inf when vetoed)."""
    verdicts, probs = [], np.full(len(pairs), -np.inf)
    for i, (c, p) in enumerate(zip(cos, pairs, strict=True)):
        d = verifier.decide(float(c), p.a, p.b, "general")
        verdicts.append(d.verdict)
        if d.reason in ("verified", "identical", "grey_zone", "verifier_rejected"):
            probs[i] = d.probability
    return verdicts, probs


def score_pairs(
    verifier: Verifier,
    pairs: Sequence[Pair],
    cos: npt.NDArray[Any],
    judge_probs: Floats | None,
    judge_threshold: float,
    categories: Sequence[str] | None = None,
) -> dict[str, Any]:
    labels = np.fromiter((p.label for p in pairs), dtype=np.int64, count=len(pairs))
    cosf = np.asarray(cos, dtype=np.float64)
    verdicts, probs = edge_verdicts(verifier, pairs, cos)
    accepted = np.asarray([v is Verdict.ACCEPT for v in verdicts], dtype=bool)
    grey = np.asarray([v is Verdict.GREY for v in verdicts], dtype=bool)
    edge = stats(accepted, labels)
    point = {"point": verifier.point("general"), "threshold": verifier.threshold("general")}
    base = cosf >= BASELINE_THRESHOLD
    out: dict[str, Any] = {
        "pairs": len(pairs),
        "positives": int(labels.sum()),
        **edge,
        "baseline": {"threshold": BASELINE_THRESHOLD, **stats(base, labels)},
        "edge": {
            "default": {**point, **edge},
            "best_at_2pct": best_point(probs, labels),
            "grey": int(grey.sum()),
        },
        # best recall at each false-hit rate, over every threshold: the verifier's ranking vs cosine
        "frontier": {
            "verifier": frontier(np.where(np.isfinite(probs), probs, 0.0), labels, int(labels.sum())),
            "cosine": frontier(np.where(base, cosf, 0.0), labels, int(labels.sum())),
        },
    }
    served = accepted
    if judge_probs is not None:
        approved = grey & (judge_probs >= judge_threshold)
        served = accepted | approved
        grey_scores = np.where(grey, judge_probs, -np.inf)
        out["edge_judge"] = {
            "default": {"judge_threshold": round(judge_threshold, 6), **stats(served, labels)},
            "best_at_2pct": best_point(grey_scores, labels, base=accepted),
            # recall of the same sweep at looser rates: where the judge starts to pay
            "frontier": {
                f"{r:g}": best_point(grey_scores, labels, base=accepted, max_rate=r)["recall"]
                for r in FRONTIER_RATES
            },
            "judge_calls": int(grey.sum()),
            "judge_approved": int(approved.sum()),
            "judge_alone_on_grey": stats(approved, labels) | {"pairs": int(grey.sum())},
        }
    if categories is not None:
        cats = np.asarray(categories)
        by_cat: dict[str, dict[str, Any]] = {}
        for cat in sorted(set(categories)):
            m = cats == cat
            row: dict[str, Any] = {"pairs": int(m.sum()), "edge": stats(accepted[m], labels[m])}
            if judge_probs is not None:
                row["edge_judge"] = stats(served[m], labels[m])
            by_cat[cat] = row
        out["false_hit_rate_by_category"] = {c: r["edge"]["false_hit_rate"] for c, r in by_cat.items()}
        out["by_category"] = by_cat
    return out


def judge_probabilities(
    head: JudgeHead, va: npt.NDArray[Any], vb: npt.NDArray[Any], pairs: Sequence[Pair]
) -> Floats:
    return head.probabilities(va, vb, [p.a for p in pairs], [p.b for p in pairs])
