"""Replay recorded outcomes through routers and score them (cost–quality curves, APGR, AIQ, targets).

Every router is judged on rows it was not trained or calibrated on. The learned router's thresholds
come from out-of-fold predictions on its training rows (``shared.routing.calibration``), then are
applied unchanged to the evaluated rows, so a reported point is what a deployment would have seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from shared.routing.calibration import ThresholdTable, calibrate, choose, lambda_grid, realised
from shared.routing.datasets import OutcomeTable
from shared.routing.estimators import (
    CascadeEstimator,
    KnnSuccess,
    SuccessEstimator,
    Tunable,
    default_estimator,
    hash_folds,
    out_of_fold,
)
from shared.routing.verifier import answer_features

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
TARGETS = (0.8, 0.9, 0.95, 1.0)
ANSWER_FEATURE_SCALE = 3.0


@dataclass
class Point:
    cost: float
    quality: float
    strong_share: float


@dataclass
class RouterResult:
    name: str
    curve: list[Point]
    # per target: realised point on the evaluated rows, using settings calibrated on training rows
    at_target: dict[float, Point] = field(default_factory=dict)


@dataclass
class Plan:
    """Row indices to learn from and to report on; the reported rows of all plans are disjoint."""

    train: NDArray[np.intp]
    test: NDArray[np.intp]


def _curve(pred: F64, cost_est: F64, scores: F64, costs: F64, strong: int) -> list[Point]:
    pts = []
    for lam in lambda_grid(pred, cost_est, size=200):
        c = choose(pred, cost_est, float(lam))
        q, cost = realised(c, scores, costs)
        pts.append(Point(cost, q, float(np.mean(c == strong))))
    return sorted(pts, key=lambda p: (p.cost, p.quality))


def _learned(
    name: str,
    factory: Callable[[], SuccessEstimator],
    tab: OutcomeTable,
    x: F32,
    plans: list[Plan],
    strong: str,
    targets: tuple[float, ...],
) -> tuple[RouterResult, ThresholdTable]:
    si = tab.models.index(strong)
    pred = np.full(tab.scores.shape, np.nan)
    cost_est = np.full(tab.scores.shape, np.nan)
    choice = {t: np.full(len(tab), -1, dtype=np.intp) for t in targets}
    table: ThresholdTable | None = None
    for plan in plans:
        tr = tab.subset(plan.train)
        est_cost = np.nanmean(tr.costs, axis=0)
        est = factory()
        est.fit(x[plan.train], tr.scores)
        # settings tuned on the training rows carry over; the out-of-fold weights are refitted
        oof_factory = est.frozen() if isinstance(est, Tunable) else factory
        oof = out_of_fold(oof_factory, x[plan.train], tr.scores, hash_folds(tr.prompts, 5))
        table = calibrate(oof, est_cost, tr.scores, tr.costs, tr.models, strong, targets)
        p = est.predict(x[plan.test])
        pred[plan.test], cost_est[plan.test] = p, est_cost
        for t in targets:
            choice[t][plan.test] = choose(p, est_cost, table.lam_for(t))
    if table is None:
        raise ValueError("no evaluation plan")
    rows = np.concatenate([p.test for p in plans])
    scores, costs = tab.scores[rows], tab.costs[rows]
    result = RouterResult(name, _curve(pred[rows], cost_est[rows], scores, costs, si))
    for t in targets:
        c = choice[t][rows]
        q, cost = realised(c, scores, costs)
        result.at_target[t] = Point(cost, q, float(np.mean(c == si)))
    return result, table


def _random(
    tab: OutcomeTable, plans: list[Plan], strong: str, weak: str, targets: tuple[float, ...]
) -> RouterResult:
    """Send a random share ``p`` to the strong model; ``p`` per target from the training rows."""
    s, w = tab.models.index(strong), tab.models.index(weak)
    te = tab.subset(np.concatenate([p.test for p in plans]))
    tr = tab.subset(plans[0].train)

    def at(t: OutcomeTable, p: float) -> Point:
        q = (1 - p) * np.mean(t.scores[:, w]) + p * np.mean(t.scores[:, s])
        c = (1 - p) * np.mean(t.costs[:, w]) + p * np.mean(t.costs[:, s])
        return Point(float(c), float(q), p)

    result = RouterResult("random", [at(te, p) for p in np.linspace(0, 1, 51)])
    qs, qw = float(np.mean(tr.scores[:, s])), float(np.mean(tr.scores[:, w]))
    for t in targets:
        p = 1.0 if qs <= qw else float(np.clip((t * qs - qw) / (qs - qw), 0.0, 1.0))
        result.at_target[t] = at(te, p)
    return result


def _fixed(name: str, tab: OutcomeTable, model: str, strong: str) -> RouterResult:
    i = tab.models.index(model)
    pt = Point(float(np.mean(tab.costs[:, i])), float(np.mean(tab.scores[:, i])), float(model == strong))
    return RouterResult(name, [pt], dict.fromkeys(TARGETS, pt))


def _oracle(tab: OutcomeTable, strong: str) -> RouterResult:
    """Knows every outcome: the cheapest model that scores the row's best, swept over ``lam``."""
    si = tab.models.index(strong)
    curve = _curve(tab.scores, tab.costs, tab.scores, tab.costs, si)
    result = RouterResult("oracle", curve)
    qs = float(np.mean(tab.scores[:, si]))
    for t in TARGETS:
        ok = [p for p in curve if p.quality >= t * qs - 1e-12]
        result.at_target[t] = min(ok, key=lambda p: p.cost) if ok else curve[-1]
    return result


def evaluate(
    tab: OutcomeTable,
    x: F32,
    plans: list[Plan],
    strong: str,
    weak: str,
    targets: tuple[float, ...] = TARGETS,
    estimator: Callable[[], SuccessEstimator] = default_estimator,
) -> tuple[dict[str, RouterResult], ThresholdTable, OutcomeTable]:
    """All routers on the union of the plans' test rows; also returns the calibrated table and those rows."""
    te = tab.subset(np.concatenate([p.test for p in plans]))
    learned, table = _learned("edgeroute", estimator, tab, x, plans, strong, targets)
    knn, _ = _learned("knn", lambda: KnnSuccess(k=32, prior_weight=0.0), tab, x, plans, strong, targets)
    results = {}
    if weak in tab.responses and len(tab.models) == 2:
        results["edgeroute_cascade"], table = _cascade(estimator, tab, x, plans, strong, weak, targets)
    results |= {
        "edgeroute": learned,
        "knn": knn,
        "random": _random(tab, plans, strong, weak, targets),
        "always_weak": _fixed("always_weak", te, weak, strong),
        "always_strong": _fixed("always_strong", te, strong, strong),
        "oracle": _oracle(te, strong),
    }
    return results, table, te


def _cascade(
    estimator: Callable[[], SuccessEstimator],
    tab: OutcomeTable,
    x: F32,
    plans: list[Plan],
    strong: str,
    weak: str,
    targets: tuple[float, ...],
) -> tuple[RouterResult, ThresholdTable]:
    """The weak model always drafts; the router reads its answer and escalates when it looks wrong.

    Escalated rows pay for both calls, so the cost axis stays honest.
    """
    w, s = tab.models.index(weak), tab.models.index(strong)
    feats = np.array([answer_features(a) for a in tab.responses[weak]], dtype=np.float32)
    # scaled so the few answer signals are not drowned by the 384 embedding dimensions under one L2 penalty
    xa = np.hstack([x, ANSWER_FEATURE_SCALE * feats]).astype(np.float32)
    costs = tab.costs.copy()
    costs[:, s] += costs[:, w]
    paid = replace(tab, costs=costs)
    return _learned(
        "edgeroute_cascade",
        lambda: CascadeEstimator(x.shape[1], [w], estimator),
        paid,
        xa,
        plans,
        strong,
        targets,
    )


def prompt_router(
    tab: OutcomeTable,
    x: F32,
    plan: Plan,
    strong: str,
    targets: tuple[float, ...],
    estimator: Callable[[], SuccessEstimator] = default_estimator,
) -> RouterResult:
    """The prompt-only router trained and calibrated on ``plan.train``, scored on ``plan.test``."""
    return _learned("edgeroute", estimator, tab, x, [plan], strong, targets)[0]


def oracle(tab: OutcomeTable, strong: str) -> RouterResult:
    return _oracle(tab, strong)


def strong_quality(tab: OutcomeTable, strong: str) -> float:
    return tab.mean_score(strong)


def share_needed(curve: list[Point], target_quality: float) -> float | None:
    """Least strong-call share on a curve that reaches ``target_quality`` (RouteLLM's reading)."""
    ok = [p.strong_share for p in curve if p.quality >= target_quality - 1e-12]
    return min(ok) if ok else None


def cost_needed(curve: list[Point], target_quality: float, strong_cost: float) -> float | None:
    """Least cost (relative to always-strong) on a curve that reaches ``target_quality``."""
    ok = [p.cost for p in curve if p.quality >= target_quality - 1e-12]
    return min(ok) / strong_cost if ok else None


def _envelope(curve: list[Point], x_of: Callable[[Point], float]) -> tuple[F64, F64]:
    """Best quality reachable at each x (non-decreasing), with the curve's own end points."""
    pts = sorted(((x_of(p), p.quality) for p in curve), key=lambda t: t[0])
    xs = np.array([p[0] for p in pts])
    ys = np.maximum.accumulate(np.array([p[1] for p in pts]))
    return xs, ys


def _area(xs: F64, ys: F64) -> float:
    """Mean of the step-interpolated envelope over x in [0, 1]."""
    grid = np.linspace(0.0, 1.0, 1001)
    idx = np.searchsorted(xs, grid, side="right") - 1
    vals = np.where(idx >= 0, ys[np.clip(idx, 0, None)], np.nan)
    vals = np.where(np.isnan(vals), ys[0] if xs[0] <= 0 else np.nan, vals)
    return float(np.nanmean(vals)) if not np.all(np.isnan(vals)) else 0.0


def apgr(
    curve: list[Point], q_weak: float, q_strong: float, cost_lo: float, cost_hi: float, two_models: bool
) -> float:
    """Average performance gap recovered over strong-call share (two models) or normalised cost."""
    if q_strong == q_weak:
        return 0.0
    span = max(cost_hi - cost_lo, 1e-12)
    xs, ys = _envelope(
        curve, (lambda p: p.strong_share) if two_models else (lambda p: (p.cost - cost_lo) / span)
    )
    return (_area(xs, ys) - q_weak) / (q_strong - q_weak)


def aiq(curve: list[Point], cost_lo: float, cost_hi: float) -> float:
    """RouterBench's average improvement in quality: area under the non-decreasing convex hull."""
    span = max(cost_hi - cost_lo, 1e-12)
    pts = sorted(((p.cost - cost_lo) / span, p.quality) for p in curve)
    hull: list[tuple[float, float]] = []
    for x, y in pts:
        if hull and y <= hull[-1][1]:
            continue  # dominated: costs more, no better
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], (x, y)) >= 0:
            hull.pop()
        hull.append((x, y))
    xs = np.array([h[0] for h in hull])
    ys = np.array([h[1] for h in hull])
    grid = np.linspace(0.0, 1.0, 1001)
    vals = np.interp(grid, xs, ys, left=ys[0], right=ys[-1])
    return float(np.mean(vals))


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
