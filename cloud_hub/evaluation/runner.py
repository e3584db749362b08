"""One evaluation run: sample stored traffic, score each answer with the cheapest scorer that
applies, persist verdicts, build the weakness report, export, log to MLflow, propose a threshold.

Scorer order (cheapest and most trustworthy first): surface failures (errors, empty, refusal) →
reference checks (GSM8K number, multiple-choice letter, code tests in the sandbox) → user feedback
→ regeneration (the user re-asked) → the judge model (rubric; pairwise against the stronger tier
on a sample). An answer no scorer applies to is left unscored rather than guessed. Preference
pairs come from the judge's consistent pairwise verdicts and from reference checks that passed one
answer to a prompt and failed another (``cloud_hub.evaluation.preferences``).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cloud_hub.evaluation.judge import CountingJudge, Judge, JudgeScorer, compare
from cloud_hub.evaluation.preferences import reference_pairs
from cloud_hub.evaluation.report import WeaknessReport, build_report
from cloud_hub.evaluation.results import PairRow, ResultRow, ResultStore
from cloud_hub.evaluation.sampling import Sampled, stratified_sample
from cloud_hub.evaluation.scorers import (
    CodeTestScorer,
    FailureMode,
    GSM8KScorer,
    MultipleChoiceScorer,
    Scorer,
    Verdict,
    nothing_to_grade,
    surface_failure,
)
from cloud_hub.telemetry.store import TelemetryStore
from shared.telemetry import TelemetryEvent

StrongerTier = Callable[[str], str]  # prompt -> the stronger tier's answer


class FeedbackScorer:
    name = "feedback"

    def __init__(self, ratings: dict[str, float]) -> None:
        self.ratings = ratings

    def score(self, event: TelemetryEvent) -> Verdict | None:
        rating = self.ratings.get(event.response_id) if event.response_id else None
        if rating is None or rating == 0:
            return None
        ok = rating > 0
        return Verdict(self.name, ok, (rating + 1) / 2, None if ok else FailureMode.NEGATIVE_FEEDBACK)


class RegenerationScorer:
    name = "regeneration"

    def __init__(self, regenerated: set[str]) -> None:
        self.regenerated = regenerated

    def score(self, event: TelemetryEvent) -> Verdict | None:
        if event.response_id and event.response_id in self.regenerated:
            return Verdict(self.name, False, 0.0, FailureMode.REGENERATED)
        return None


@dataclass
class EvalConfig:
    per_stratum: int = 50
    oversample: float = 4.0
    seed: int = 0
    judge_budget: int = 100  # answers the judge may grade per run: its calls are the expensive part
    pairwise_rate: float = 0.2
    targets: dict[str, float] = field(default_factory=dict)
    default_target: float = 0.8
    min_n: int = 10
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    report: WeaknessReport
    summary: dict[str, float]
    rows: list[ResultRow]
    pairs: list[PairRow]


class EvalRunner:
    def __init__(
        self,
        store: TelemetryStore,
        judge: Judge | None = None,
        stronger: StrongerTier | None = None,
        reference_scorers: Sequence[Scorer] | None = None,
        judge_pass_at: float = 7.0,
    ) -> None:
        self.store = store
        self.results = ResultStore(store)
        self.judge = CountingJudge(judge) if judge is not None else None
        self.stronger = stronger
        self.judge_pass_at = judge_pass_at
        self.reference_scorers: list[Scorer] = list(
            reference_scorers or (GSM8KScorer(), MultipleChoiceScorer(), CodeTestScorer())
        )

    def run(self, config: EvalConfig, progress: Callable[[int, int], None] | None = None) -> RunOutcome:
        run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        started = time.time()
        params: dict[str, Any] = {k: v for k, v in vars(config).items() if k != "targets"}
        params["judge"] = self.judge.name if self.judge else "none"
        self.results.start_run(run_id, started, params)
        events = self.store.events(config.since, config.until)
        sample = stratified_sample(events, config.per_stratum, config.oversample, config.seed)
        regenerated = {e.regenerates for _, e in events if e.regenerates}
        chain: list[Scorer] = [*self.reference_scorers, FeedbackScorer(self.store.feedback_by_response())]
        chain.append(RegenerationScorer(regenerated))
        judge_scorer = JudgeScorer(self.judge, self.judge_pass_at) if self.judge is not None else None
        rng = random.Random(config.seed)
        budget = config.judge_budget
        calls_before = self.judge.calls if self.judge is not None else 0
        rows: list[ResultRow] = []
        pairs: list[PairRow] = []
        scored: list[tuple[Sampled, Verdict]] = []
        placeholders = 0
        for i, item in enumerate(sample):
            placeholder = nothing_to_grade(item.event)
            placeholders += placeholder
            verdict = None
            if not placeholder:
                verdict = surface_failure(item.event) or next(
                    (v for s in chain if (v := s.score(item.event)) is not None), None
                )
            if verdict is None and not placeholder and judge_scorer is not None and budget > 0:
                calls = self.judge.calls if self.judge is not None else 0
                verdict = judge_scorer.score(item.event)
                if self.judge is not None and self.judge.calls > calls:
                    budget -= 1  # an answer the judge could not read (no prompt captured) is free
                if verdict is not None and self.stronger is not None and rng.random() < config.pairwise_rate:
                    verdict = self._pairwise(run_id, item, verdict, pairs)
            if verdict is not None:
                rows.append(self._row(run_id, item, verdict))
                scored.append((item, verdict))
            if progress is not None:
                progress(i + 1, len(sample))
        pairs.extend(reference_pairs(run_id, scored))
        self.results.add(rows, pairs)
        report = build_report(run_id, rows, config.targets, config.default_target, config.min_n)
        scored_weight = sum(r.weight for r in rows)
        summary = {
            "events": float(len(events)),
            "sampled": float(len(sample)),
            "scored": float(len(rows)),
            "replayed_without_text": float(placeholders),
            "pass_rate": sum(r.weight for r in rows if r.passed) / scored_weight if scored_weight else 0.0,
            "flagged_cells": float(len(report.flagged())),
            "judge_calls": float(self.judge.calls - calls_before if self.judge is not None else 0),
            "preference_pairs": float(len(pairs)),
            "seconds": time.time() - started,
        }
        self.results.finish_run(run_id, time.time(), summary)
        return RunOutcome(run_id, report, summary, rows, pairs)

    def _pairwise(self, run_id: str, item: Sampled, verdict: Verdict, pairs: list[PairRow]) -> Verdict:
        assert self.judge is not None and self.stronger is not None
        ev = item.event
        prompt, ours = ev.prompt or "", ev.completion or ""
        theirs = self.stronger(prompt)
        result = compare(self.judge, prompt, ours, theirs)
        if result.preference in ("A", "B"):
            chosen, rejected = (ours, theirs) if result.preference == "A" else (theirs, ours)
            pairs.append(PairRow(run_id, item.edge_id, ev.event_id, "pairwise_judge", ev.domain, ev.route,
                                 prompt, chosen, rejected))  # fmt: skip
        if result.preference == "B":
            return Verdict("judge:pairwise", False, 0.0, FailureMode.LOST_PAIRWISE, verdict.detail)
        return verdict

    @staticmethod
    def _row(run_id: str, item: Sampled, v: Verdict) -> ResultRow:
        ev = item.event
        return ResultRow(
            run_id, item.edge_id, ev.event_id, ev.domain, ev.route, ev.response_model or ev.request_model,
            item.weight, v.scorer, v.passed, v.score, v.failure.value if v.failure else None, v.detail,
            ev.canary, ev.policy_version, ev.local_confidence,
        )  # fmt: skip
