"""Fit the success head and the threshold table on the joined table of the deployed tiers.

Same estimator as ``shared.routing.train``: one logistic per tier on the MiniLM prompt embedding,
its L2 strength picked by inner cross-validation. Every figure is honest: the train items are cut
into hash folds, each row is predicted by a head that never saw it, and those out-of-fold
predictions give the per-tier AUC and drive the threshold calibration (with the real mean cost
per request of each tier, which the table then records as ``option_costs``). The head that ships
is refitted on every row. Each tier's logistic learns from the rows where that tier's outcome is
known, so a replayed tier uses every recorded train item while a live tier has the few that were
asked; the L2 grid reaches strong enough settings that a tier with little signal in few rows
falls back to its base rate instead of fitting noise. Thresholds are calibrated on the rows where
every tier is known. Task and domain heads are left as they are.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cloud_hub.calibrate.outcomes import JoinedTable
from shared.routing.calibration import ThresholdTable, calibrate
from shared.routing.embed import TextEmbedder, routing_view
from shared.routing.estimators import AutoLogistic, hash_folds, out_of_fold
from shared.routing.heads import (
    DOMAIN_FILE,
    HEADS_DIR,
    HEADS_VERSION,
    MANIFEST_FILE,
    SUCCESS_FILE,
    TASK_FILE,
    THRESHOLDS_FILE,
    ClassifierHeads,
)
from shared.routing.linear import LinearHead
from shared.taxonomy import Tier

F64 = NDArray[np.float64]
FOLDS = 5
FOLD_SALT = "edgeroute-calibrate-folds"
L2_GRID = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
_KEPT = ("task_labels", "domain_labels", "embedding")


def auc(labels: NDArray[np.bool_], scores: F64) -> float:
    """Area under the ROC curve by the rank-sum formula (ties count half); NaN with one class only."""
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over runs of equal scores
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


@dataclass(frozen=True)
class TierFit:
    tier: str
    model: str
    outcomes: str  # "live" or "recorded"
    rows: int  # rows with a known outcome for this tier
    success_rate: float  # the tier's accuracy on those train rows
    mean_cost: float  # USD per request on the calibration rows
    auc: float  # out-of-fold
    head_accuracy: float  # out-of-fold, p >= 0.5 read as "will succeed"
    majority: float  # accuracy of always guessing the tier's more common outcome
    l2: float


@dataclass(frozen=True)
class FitResult:
    head: LinearHead
    table: ThresholdTable
    tiers: tuple[TierFit, ...]
    rows: int
    calibration_rows: int


def fit(joined: JoinedTable, embedder: TextEmbedder, *, confidence: float = 0.0) -> FitResult:
    if len(joined) == 0:
        raise ValueError("no train rows to fit on")
    labels = joined.labels
    for label in labels:
        Tier(label)
    x = embedder.embed([routing_view(p) for p in joined.prompts]).astype(np.float32)
    scores, costs = joined.scores, joined.costs
    est = AutoLogistic(grid=L2_GRID)
    est.fit(x, scores)
    heads = est.heads
    weights = np.concatenate([h.weights for h in heads], axis=1)
    bias = np.concatenate([h.bias for h in heads])
    l2 = ",".join(str(v) for v in est.chosen)
    head = LinearHead("sigmoid", labels, weights, bias, {"version": HEADS_VERSION, "l2": l2})

    oof = out_of_fold(est.frozen(), x, scores, hash_folds(joined.prompts, FOLDS, FOLD_SALT))
    complete = joined.complete()
    if not complete.any():
        raise ValueError("no train row has an outcome and a cost for every tier")
    mean_cost = costs[complete].mean(axis=0)
    reference = Tier.FRONTIER.value if Tier.FRONTIER.value in labels else labels[-1]
    table = calibrate(
        oof[complete], mean_cost, scores[complete], costs[complete], labels, reference, confidence=confidence
    )
    table = replace(table, option_costs=tuple(float(c) for c in mean_cost))

    fits = []
    for j, t in enumerate(joined.tiers):
        known = ~np.isnan(scores[:, j])
        y = scores[known, j] >= 0.5
        p = oof[known, j]
        rate = float(y.mean()) if y.size else float("nan")
        fits.append(
            TierFit(
                tier=t.tier.value,
                model=t.model,
                outcomes="live" if t.live else "recorded",
                rows=int(known.sum()),
                success_rate=rate,
                mean_cost=float(mean_cost[j]),
                auc=auc(y, p),
                head_accuracy=float(np.mean((p >= 0.5) == y)) if y.size else float("nan"),
                majority=max(rate, 1.0 - rate),
                l2=float(est.chosen[j]),
            )
        )
    return FitResult(head, table, tuple(fits), len(joined), int(complete.sum()))


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _nan_none(v: float) -> float | None:
    return None if np.isnan(v) else round(v, 6)


def write(result: FitResult, out: Path, embedding: str, extra: dict[str, object]) -> dict[str, object]:
    """success_head.npz, thresholds.json and manifest.json in ``out``; task and domain heads are
    kept (copied from the shipped ones when ``out`` has none)."""
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST_FILE
    before: dict[str, object] = {}
    for src in (manifest_path, HEADS_DIR / MANIFEST_FILE):
        if src.is_file():
            before = json.loads(src.read_text(encoding="utf-8"))
            break
    if before.get("embedding") not in (None, embedding):
        raise ValueError(f"the task and domain heads were trained on {before['embedding']}, not {embedding}")
    # what describes the kept task and domain heads carries over; every success-head figure is new
    manifest = {k: before[k] for k in _KEPT if k in before}
    manifest["task_domain_trained_by"] = before.get("task_domain_trained_by") or before.get("command")
    for name in (TASK_FILE, DOMAIN_FILE):
        if not (out / name).is_file():
            shutil.copyfile(HEADS_DIR / name, out / name)
    result.head.save(out / SUCCESS_FILE)
    result.table.save(out / THRESHOLDS_FILE)
    manifest.update(
        {
            "version": HEADS_VERSION,
            "embedding": embedding,
            "success_rows": result.rows,
            "success_l2": result.head.meta["l2"],
            "success_labels": list(result.head.labels),
            "calibration_rows": result.calibration_rows,
            "success_rows_per_tier": {f.tier: f.rows for f in result.tiers},
            "success_auc": {f.tier: _nan_none(f.auc) for f in result.tiers},
            "success_rate": {f.tier: _nan_none(f.success_rate) for f in result.tiers},
            "option_costs": {f.tier: f.mean_cost for f in result.tiers},
            **extra,
        }
    )
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    ClassifierHeads.load(out)  # the three heads must agree on the embedding before anyone loads them
    return manifest
