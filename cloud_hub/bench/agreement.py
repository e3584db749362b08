"""Offline answer-agreement cascades on recorded answers, and what each cascade signal buys.

Rows split into a calibration part and a held-back part. Everything that is chosen — which cheap
models, their order, the agreement ``k``, the success-head thresholds, the prompt router's ``lam`` —
is chosen on calibration rows only; the figures are what that choice realises on held-back rows.

A cascade is chosen as the cheapest (on calibration rows) whose quality reaches ``target x`` the
strong model's with a margin: the paired per-row gap ``score - target * strong_score`` must stay
non-negative at ``margin`` standard errors below its mean. A few hundred calibration rows let lucky
configurations through; the margin makes that rarer, not impossible (on MBPP's 150 calibration rows
one cheap model beat GPT-4 by chance and lost 11% on the held-back half).

The success head here is trained on calibration rows only (out-of-fold for its own thresholds); the
shipped ``models/routing`` heads saw every RouterBench row and would leak.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from cloud_hub.bench.routing_eval import Plan, Point, oracle, prompt_router
from shared.routing.agreement import CascadeRule, Replay, encode, normalise, replay, task_of
from shared.routing.datasets import OutcomeTable
from shared.routing.estimators import AutoLogistic, hash_folds, out_of_fold

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
AGREEMENT_TARGETS = (0.95, 0.99)
CHEAP_SHARE = 0.25  # a cascade member costs at most this share of the strong model, on average
MAX_MODELS = 4
ACCEPT_GRID: tuple[float | None, ...] = (None, 0.8, 0.9, 0.95, 0.98)
SKIP_GRID: tuple[float | None, ...] = (None, 0.15, 0.3, 0.45)
LOCAL_CONFIDENCE_NOTE = "skipped: RouterBench records no token log-probabilities or local-model replies"


@dataclass(frozen=True)
class SignalPoint:
    """One signal at one quality target, realised on held-back rows (sums kept for pooling)."""

    target: float
    cost_ratio: float
    quality_ratio: float
    cost: float  # summed over held-back rows, USD
    strong_cost: float
    score: float
    strong_score: float
    rule: str = ""
    calib_cost_ratio: float | None = None
    calib_quality_ratio: float | None = None
    escalated_share: float | None = None
    mean_models_asked: float | None = None


@dataclass
class AgreementReport:
    dataset: str
    task: str
    strong: str
    rows_calibration: int
    rows_held_back: int
    cheap_models: list[str]
    signals: dict[str, dict[float, SignalPoint]] = field(default_factory=dict)
    rules: dict[str, dict[float, CascadeRule]] = field(default_factory=dict)  # cascades chosen per target
    notes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rows:
    """The arrays a replay needs for one set of rows."""

    codes: NDArray[np.int64]
    scores: F64
    costs: F64
    strong: int

    def from_means(self, target: float, p: Point, rule: str) -> SignalPoint:
        n = len(self.scores)
        ss, sc = float(self.scores[:, self.strong].sum()), float(self.costs[:, self.strong].sum())
        return SignalPoint(
            target,
            p.cost * n / sc,
            p.quality * n / ss,
            p.cost * n,
            sc,
            p.quality * n,
            ss,
            rule,
            escalated_share=p.strong_share,
            mean_models_asked=1.0,
        )

    def point(self, target: float, rep: Replay, rule: str, calib: Replay | None, on: Rows) -> SignalPoint:
        s, c = float(rep.score.sum()), float(rep.cost.sum())
        ss, sc = float(self.scores[:, self.strong].sum()), float(self.costs[:, self.strong].sum())
        return SignalPoint(
            target,
            c / sc,
            s / ss,
            c,
            sc,
            s,
            ss,
            rule,
            None if calib is None else float(calib.cost.sum() / on.costs[:, on.strong].sum()),
            None if calib is None else float(calib.score.sum() / on.scores[:, on.strong].sum()),
            float(np.mean(rep.escalated)),
            float(np.mean(rep.asked)),
        )


def lower_bound(rep: Replay, strong_scores: F64, target: float, margin: float) -> float:
    """Mean of ``score - target * strong_score`` minus ``margin`` standard errors."""
    d = rep.score - target * strong_scores
    se = float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
    return float(np.mean(d)) - margin * se


def candidate_rules(cheap: Sequence[str], strong: str, max_models: int = MAX_MODELS) -> list[CascadeRule]:
    """Every subset of ``cheap`` up to ``max_models``, asked cheapest first, with every ``k``."""
    rules = [CascadeRule((), strong, 1)]  # always-strong: a choice that always meets the target
    for size in range(1, min(max_models, len(cheap)) + 1):
        for sub in itertools.combinations(cheap, size):
            rules += [CascadeRule(sub, strong, k) for k in range(1, size + 1)]
    return rules


def with_head(rules: Iterable[CascadeRule]) -> list[CascadeRule]:
    out = []
    for r in rules:
        for a, s in itertools.product(ACCEPT_GRID, SKIP_GRID):
            if r.models and (a is not None or s is not None):
                out.append(CascadeRule(r.models, r.final, r.k, a, s))
    return out


def choose(
    rules: Sequence[CascadeRule],
    models: Sequence[str],
    rows: Rows,
    targets: Sequence[float],
    margin: float,
    success: F64 | None = None,
) -> dict[float, tuple[CascadeRule, Replay]]:
    """Per target, the cheapest rule on ``rows`` whose quality bound reaches it (ties: fewer calls).

    When no rule reaches a target, the one with the best bound is kept, so a report never lacks a row.
    """
    best: dict[float, tuple[tuple[float, float, str], CascadeRule, Replay]] = {}
    fallback: dict[float, tuple[float, CascadeRule, Replay]] = {}
    strong_scores = rows.scores[:, rows.strong]
    for rule in rules:
        rep = replay(rule, models, rows.codes, rows.scores, rows.costs, success)
        key = (float(rep.cost.sum()), float(rep.asked.mean()), rule.describe())
        for t in targets:
            lb = lower_bound(rep, strong_scores, t, margin)
            if t not in fallback or lb > fallback[t][0]:
                fallback[t] = (lb, rule, rep)
            if lb >= 0 and (t not in best or key < best[t][0]):
                best[t] = (key, rule, rep)
    if not fallback:
        raise ValueError("no candidate rules")
    return {t: (best[t][1], best[t][2]) if t in best else (fallback[t][1], fallback[t][2]) for t in targets}


def cheap_models(table: OutcomeTable, calib: NDArray[np.intp], strong: str, share: float) -> list[str]:
    """Models with recorded answers that cost at most ``share`` of the strong model, cheapest first."""
    cost = np.nanmean(table.costs[calib], axis=0)
    si = table.models.index(strong)
    ok = [
        m
        for i, m in enumerate(table.models)
        if i != si and m in table.responses and cost[i] <= share * cost[si]
    ]
    return sorted(ok, key=lambda m: (cost[table.models.index(m)], m))


def applicable(table: OutcomeTable, strong: str) -> bool:
    """At least two cheap models and the strong one recorded their answers."""
    return strong in table.responses and sum(m != strong for m in table.responses) >= 2


def success_head(x: F32, table: OutcomeTable, plan: Plan, cols: Sequence[int]) -> tuple[F64, F64]:
    """Prompt-only success probabilities of ``cols``: out-of-fold on calibration rows, fitted on them
    for held-back rows. Other columns stay NaN."""
    y = table.scores[plan.train][:, list(cols)]
    calib_p, held_p = (np.full((len(idx), len(table.models)), np.nan) for idx in (plan.train, plan.test))
    est = AutoLogistic()
    est.fit(x[plan.train], y)
    calib_p[:, list(cols)] = out_of_fold(
        est.frozen(), x[plan.train], y, hash_folds([table.prompts[i] for i in plan.train], 5)
    )
    held_p[:, list(cols)] = est.predict(x[plan.test])
    return calib_p, held_p


def evaluate_agreement(
    table: OutcomeTable,
    x: F32,
    plan: Plan,
    strong: str,
    targets: Sequence[float] = AGREEMENT_TARGETS,
    margin: float = 1.0,
    cheap_share: float = CHEAP_SHARE,
    max_models: int = MAX_MODELS,
) -> AgreementReport:
    """Every signal at every target: configuration from ``plan.train`` rows, figures on ``plan.test``."""
    task = task_of(table.prompts)
    answers = [
        [normalise(r, p) for r, p in zip(table.responses[m], table.prompts, strict=True)]
        for m in table.models
    ]
    codes = encode(answers)
    si = table.models.index(strong)
    cal = Rows(codes[plan.train], table.scores[plan.train], table.costs[plan.train], si)
    held = Rows(codes[plan.test], table.scores[plan.test], table.costs[plan.test], si)
    cheap = cheap_models(table, plan.train, strong, cheap_share)
    report = AgreementReport(table.name, task, strong, len(plan.train), len(plan.test), cheap)
    report.notes["local_confidence"] = LOCAL_CONFIDENCE_NOTE
    report.notes["selection"] = (
        f"per target, the cheapest cascade on calibration rows whose per-row quality gap to the target "
        f"stays >= 0 at {margin:g} standard errors below its mean"
    )
    if task != "mcq":
        report.notes["agreement"] = (
            "code answers agree when their first function's syntax tree matches after renaming identifiers"
        )

    rules = candidate_rules(cheap, strong, max_models)
    cols = [table.models.index(m) for m in cheap]
    calib_p, held_p = success_head(x, table, plan, cols)
    head_rules = rules + with_head(rules)
    for name, cands, pc, ph in (
        ("agreement", rules, None, None),
        ("agreement_head", head_rules, calib_p, held_p),
    ):
        report.signals[name], report.rules[name] = {}, {}
        for t, (rule, rc) in choose(cands, table.models, cal, targets, margin, pc).items():
            rh = replay(rule, table.models, held.codes, held.scores, held.costs, ph)
            report.signals[name][t] = held.point(t, rh, rule.describe(), rc, cal)
            report.rules[name][t] = rule

    router = prompt_router(table, x, plan, strong, tuple(targets))
    report.signals["prompt_only"] = {
        t: held.from_means(t, router.at_target[t], "edgeroute prompt router (lam calibrated per target)")
        for t in targets
    }
    te = table.subset(plan.test)
    orc = oracle(te, strong)
    qs = te.mean_score(strong)
    report.signals["oracle"] = {}
    for t in targets:
        ok = [p for p in orc.curve if p.quality >= t * qs - 1e-12] or orc.curve[-1:]
        report.signals["oracle"][t] = held.from_means(
            t, min(ok, key=lambda p: p.cost), "cheapest model with the row's best score (knows outcomes)"
        )
    order = ("prompt_only", "agreement", "agreement_head", "oracle")
    report.signals = {k: report.signals[k] for k in order}
    return report
