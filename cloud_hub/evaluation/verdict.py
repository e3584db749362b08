"""What a scorer says about one answer, and the failure-mode taxonomy the reports group by."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

import msgspec

from shared.telemetry import TelemetryEvent


class FailureMode(StrEnum):
    """Why an answer failed, most specific first; the training team filters exports by these."""

    WRONG_ANSWER = "wrong_answer"  # a reference check disagreed
    NO_ANSWER = "no_answer"  # no extractable answer (format not followed)
    EMPTY = "empty"
    REFUSAL = "refusal"
    TRUNCATED = "truncated"  # hit the token limit
    CODE_ERROR = "code_error"  # raised, or failed its tests
    CODE_TIMEOUT = "code_timeout"
    CODE_MEMORY = "code_memory"
    LOW_JUDGE_SCORE = "low_judge_score"
    LOST_PAIRWISE = "lost_pairwise"  # the stronger tier's answer was preferred
    NEGATIVE_FEEDBACK = "negative_feedback"
    REGENERATED = "regenerated"  # the user re-asked
    REQUEST_ERROR = "request_error"  # the request itself failed


class Verdict(msgspec.Struct, frozen=True, omit_defaults=True):
    scorer: str  # "reference:gsm8k", "judge:rubric", "feedback", ...
    passed: bool
    score: float  # 0..1, comparable across scorers
    failure: FailureMode | None = None
    detail: str = ""


class Scorer(Protocol):
    """One way of judging an answer. ``score`` returns None when it does not apply."""

    name: str

    def score(self, event: TelemetryEvent) -> Verdict | None: ...


_REFUSALS = ("i can't help", "i cannot help", "i can't assist", "i cannot assist", "i'm sorry, but i can")


def surface_failure(event: TelemetryEvent) -> Verdict | None:
    """Failures visible without any model: errors, empty, refusals; the cheapest check of all."""
    if event.error_type:
        return Verdict("surface", False, 0.0, FailureMode.REQUEST_ERROR, event.error_type)
    if event.completion is not None:
        text = event.completion.strip()
        if not text:
            return Verdict("surface", False, 0.0, FailureMode.EMPTY)
        if text.lower().startswith(_REFUSALS):
            return Verdict("surface", False, 0.0, FailureMode.REFUSAL, text[:80])
    return None
