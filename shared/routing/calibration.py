"""Calibration: turn a quality target into the routing rule's one knob, for any number of tiers.

The rule (see ``choose``) sends each request to the route with the highest
``p_success - lam * cost / cost_ref``: ``lam`` is the price of one unit of expected quality in units of
the dearest route's cost. ``lam = 0`` buys the most likely correct route everywhere; a large ``lam``
buys the cheapest. With calibrated probabilities this Lagrangian rule is the least-cost way to reach any
expected quality (it is the exact solution of the relaxed knapsack), and unlike RouteLLM's single
threshold between two models it spends the budget across N tiers at once: a request moves one step up
when that step's gain per unit cost beats the others'.

``calibrate`` replays recorded outcomes (predictions made out-of-fold, so they are honest) over a
grid of ``lam`` and, for each target, keeps the cheapest ``lam`` whose *realised* quality reaches
``target * reference_quality``. On few rows that choice is optimistic: the cheapest setting that
reaches a target is, among many candidates, the one luckiest on these rows. With ``confidence``
(say 0.95) a setting must instead reach the target at the lower bound of a paired bootstrap of its
quality ratio to the reference, so what ships holds on rows like these with that confidence.
The result is a ``ThresholdTable`` that both programs load from JSON. A table may also carry each
option's mean cost per request on the calibration rows (``option_costs``): ``lam`` is only
meaningful against the costs it was calibrated with, so a program that has no better price for a
route should use these.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
TABLE_VERSION = 1
DEFAULT_TARGETS = (0.8, 0.85, 0.9, 0.95, 0.97, 0.99, 1.0)


def choose(pred: F64, cost_est: F64, lam: float) -> NDArray[np.intp]:
    """Index of the chosen option per row. ``pred`` (n, m); ``cost_est`` (m,) or (n, m).

    Ties go to the cheaper option, so equal predictions never pay more.
    """
    cost = np.broadcast_to(cost_est, pred.shape)
    ref = float(np.max(cost)) or 1.0
    utility = pred - lam * cost / ref
    # a vanishing cost term breaks exact ties towards cheaper routes without changing any real choice
    utility = utility - 1e-9 * cost / ref
    out: NDArray[np.intp] = np.argmax(utility, axis=1)
    return out


def realised(choice: NDArray[np.intp], scores: F64, costs: F64) -> tuple[float, float]:
    """Mean score and mean cost of the chosen options on recorded outcomes."""
    rows = np.arange(len(choice))
    return float(np.mean(scores[rows, choice])), float(np.mean(costs[rows, choice]))


def lambda_grid(pred: F64, cost_est: F64, size: int = 400) -> F64:
    """Candidate ``lam`` values at the quantiles of the per-row switching points between options."""
    cost = np.broadcast_to(cost_est, pred.shape)
    ref = float(np.max(cost)) or 1.0
    ratios: list[F64] = []
    m = pred.shape[1]
    for i in range(m):
        for j in range(m):
            dc = (cost[:, j] - cost[:, i]) / ref
            ok = dc > 0
            r = (pred[ok, j] - pred[ok, i]) / dc[ok]
            ratios.append(r[r > 0])
    flat = np.concatenate(ratios) if ratios else np.zeros(0)
    qs = np.quantile(flat, np.linspace(0.0, 1.0, size)) if flat.size else np.zeros(0)
    grid = np.unique(np.concatenate([[0.0], qs * (1 - 1e-9), qs * (1 + 1e-9), [1e12]]))
    return grid


@dataclass(frozen=True)
class OperatingPoint:
    target: float  # fraction of the reference (strongest route's) quality
    lam: float
    quality: float  # realised on the calibration rows
    cost: float
    reached: bool  # False: even the best-quality setting falls short of the target
    # with a confidence level: the bootstrap lower bound of quality / reference quality
    lower: float | None = None


@dataclass(frozen=True)
class ThresholdTable:
    """Calibrated ``lam`` per quality target, for one ordered set of options."""

    options: tuple[str, ...]
    reference: str
    reference_quality: float
    points: tuple[OperatingPoint, ...]
    version: int = TABLE_VERSION
    # mean USD per request of each option on the calibration rows, in ``options`` order; () = unknown
    option_costs: tuple[float, ...] = ()
    confidence: float = 0.0  # 0: calibrated on the realised quality itself (see ``calibrate``)

    def __post_init__(self) -> None:
        if self.option_costs and len(self.option_costs) != len(self.options):
            raise ValueError(f"{len(self.option_costs)} option costs for {len(self.options)} options")

    def cost_of(self, option: str) -> float | None:
        """The calibrated mean cost of ``option`` per request, when the table records one."""
        if not self.option_costs or option not in self.options:
            return None
        return self.option_costs[self.options.index(option)]

    def lam_for(self, target: float) -> float:
        """The cheapest calibrated setting that meets ``target``: never one calibrated for a lower target."""
        meeting = [p for p in self.points if p.target >= target - 1e-12]
        if not meeting:
            return 0.0  # above every calibrated target: buy the best predicted quality
        return min(meeting, key=lambda p: (p.target, -p.lam)).lam

    def to_json(self) -> str:
        body = {
            "version": self.version,
            "options": list(self.options),
            "reference": self.reference,
            "reference_quality": self.reference_quality,
            "points": [{k: v for k, v in asdict(p).items() if v is not None} for p in self.points],
        }
        if self.option_costs:
            body["option_costs"] = dict(zip(self.options, self.option_costs, strict=True))
        if self.confidence:
            body["confidence"] = self.confidence
        return json.dumps(body, indent=2, sort_keys=True)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.to_json() + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def from_json(cls, text: str) -> ThresholdTable:
        body = json.loads(text)
        if body.get("version") != TABLE_VERSION:
            raise ValueError(f"threshold table version {body.get('version')!r} is not {TABLE_VERSION}")
        options = tuple(body["options"])
        # tables written before option costs existed have none: callers keep their own prices
        costs = body.get("option_costs") or {}
        return cls(
            options=options,
            reference=body["reference"],
            reference_quality=float(body["reference_quality"]),
            points=tuple(OperatingPoint(**p) for p in body["points"]),
            option_costs=tuple(float(costs[o]) for o in options) if costs else (),
            confidence=float(body.get("confidence", 0.0)),
        )

    @classmethod
    def load(cls, path: Path) -> ThresholdTable:
        return cls.from_json(path.read_text(encoding="utf-8"))


def calibrate(
    pred: F64,
    cost_est: F64,
    scores: F64,
    costs: F64,
    options: Sequence[str],
    reference: str,
    targets: Sequence[float] = DEFAULT_TARGETS,
    *,
    confidence: float = 0.0,
    resamples: int = 2000,
    seed: int = 0,
) -> ThresholdTable:
    """Cheapest ``lam`` per target on recorded outcomes (rows with a missing score are skipped);
    with ``confidence`` in (0, 1), cheapest whose bootstrap lower bound reaches the target."""
    if not 0.0 <= confidence < 1.0:
        raise ValueError(f"confidence {confidence!r} must be in [0, 1)")
    ok = ~np.isnan(scores).any(axis=1) & ~np.isnan(costs).any(axis=1)
    pred, scores, costs = pred[ok], scores[ok], costs[ok]
    if np.ndim(cost_est) == 2:
        cost_est = np.asarray(cost_est)[ok]
    if len(scores) == 0:
        raise ValueError("no complete rows to calibrate on")
    ref_col = list(options).index(reference)
    ref_q = float(np.mean(scores[:, ref_col]))
    if confidence:  # the same resampled rows for every setting, so their bounds compare fairly
        boot = np.random.default_rng(seed).integers(0, len(scores), size=(resamples, len(scores)))
        ref_boot = np.maximum(scores[boot, ref_col].mean(axis=1), 1e-12)
    rows = np.arange(len(scores))
    sweep = []  # (lam, quality, cost, what must reach the target)
    for lam in lambda_grid(pred, cost_est):
        pick = choose(pred, cost_est, lam)
        q, c = realised(pick, scores, costs)
        if confidence:
            ratio = scores[rows, pick][boot].mean(axis=1) / ref_boot
            measure = float(np.quantile(ratio, 1.0 - confidence))
        else:
            measure = q / ref_q if ref_q else float("inf")
        sweep.append((lam, q, c, measure))
    points = []
    for t in targets:
        meeting = [s for s in sweep if s[3] >= t - 1e-12]
        reached = bool(meeting)
        lam, q, c, measure = (
            min(meeting, key=lambda s: (s[2], -s[0])) if reached else max(sweep, key=lambda s: (s[3], -s[2]))
        )
        lower = measure if confidence else None
        points.append(OperatingPoint(float(t), float(lam), q, c, reached, lower))
    return ThresholdTable(tuple(options), reference, ref_q, tuple(points), confidence=confidence)
