"""Scorers that need no model: the answer's surface (errors, empty, refusals) and reference checks
where a right answer exists (GSM8K number, multiple-choice letter, code against its tests). They
cost microseconds (code: one sandboxed run), so they run before anything that needs a model. Also
the verdict type and the failure-mode taxonomy every scorer and report shares.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Protocol

import msgspec

from cloud_hub.evaluation.sandbox import CodeSandbox, SandboxResult
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


# what the hub's replay backend answers for a recorded outcome whose source kept no text (MMLU's
# recorded tiers): ``[replay: <model> was recorded correct on this prompt; <this>]``
REPLAY_WITHOUT_TEXT = "the source kept no answer text]"


def nothing_to_grade(event: TelemetryEvent) -> bool:
    """A replayed answer with no text stands in for a recording, not a model's words: a check
    would grade the placeholder, so the answer is left unscored."""
    text = (event.completion or "").strip()
    return text.startswith("[replay: ") and text.endswith(REPLAY_WITHOUT_TEXT)


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


# --- reference checks --------------------------------------------------------------------------

_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
_FINAL = re.compile(r"(?:####|answer is|answer:|=)\s*\**\s*(-?\$?\d[\d,]*(?:\.\d+)?)", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\{\s*(-?\$?\d[\d,]*(?:\.\d+)?)\s*\}")
_LETTER_PATTERNS = (
    re.compile(r"answer\s*(?:is|:)?\s*\(?\**([A-D])\b", re.IGNORECASE),
    re.compile(r"^\s*\(?([A-D])[).:\s]", re.MULTILINE),
    re.compile(r"\b([A-D])\)"),
)
_CODE_BLOCK = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)


def _to_decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", "").replace("$", "").rstrip("."))
    except InvalidOperation:
        return None


def extract_number(text: str) -> Decimal | None:
    """The final numeric answer: ``####``, ``\\boxed{}``, "answer is", else the last number."""
    for pattern in (_BOXED, _FINAL):
        found = pattern.findall(text)
        if found:
            return _to_decimal(found[-1])
    numbers = _NUMBER.findall(text)
    return _to_decimal(numbers[-1]) if numbers else None


def extract_letter(text: str) -> str | None:
    stripped = text.strip()
    if len(stripped) == 1 and stripped.upper() in "ABCD":
        return stripped.upper()
    for pattern in _LETTER_PATTERNS:
        match = pattern.search(text)
        if match:
            return match.group(1).upper()
    return None


def extract_code(text: str) -> str:
    """The longest fenced block, else the whole answer (models often answer with bare code)."""
    blocks = _CODE_BLOCK.findall(text)
    return max(blocks, key=len) if blocks else text


class GSM8KScorer:
    name = "reference:gsm8k"

    def score(self, event: TelemetryEvent) -> Verdict | None:
        if event.reference_kind != "gsm8k" or event.reference is None or event.completion is None:
            return None
        expected = extract_number(event.reference)
        got = extract_number(event.completion)
        if expected is None:
            return None
        if got is None:
            return Verdict(self.name, False, 0.0, FailureMode.NO_ANSWER)
        ok = got == expected
        return Verdict(
            self.name, ok, float(ok), None if ok else FailureMode.WRONG_ANSWER, f"{got} vs {expected}"
        )


class MultipleChoiceScorer:
    name = "reference:mcq"

    def score(self, event: TelemetryEvent) -> Verdict | None:
        if event.reference_kind != "mcq" or event.reference is None or event.completion is None:
            return None
        expected = event.reference.strip().upper()[:1]
        got = extract_letter(event.completion)
        if got is None:
            return Verdict(self.name, False, 0.0, FailureMode.NO_ANSWER)
        ok = got == expected
        return Verdict(
            self.name, ok, float(ok), None if ok else FailureMode.WRONG_ANSWER, f"{got} vs {expected}"
        )


class CodeTestScorer:
    """``reference`` holds the test code (asserts, or HumanEval's ``check(candidate)`` + entry)."""

    name = "reference:code"

    def __init__(self, sandbox: CodeSandbox | None = None) -> None:
        self.sandbox = sandbox or CodeSandbox()

    def score(self, event: TelemetryEvent) -> Verdict | None:
        if event.reference_kind != "code" or event.reference is None or event.completion is None:
            return None
        result = self.sandbox.run(extract_code(event.completion) + "\n\n" + event.reference)
        return self.verdict(result)

    def verdict(self, result: SandboxResult) -> Verdict:
        if result.passed:
            return Verdict(self.name, True, 1.0)
        mode = {
            "timeout": FailureMode.CODE_TIMEOUT,
            "memory": FailureMode.CODE_MEMORY,
        }.get(result.status, FailureMode.CODE_ERROR)
        return Verdict(self.name, False, 0.0, mode, result.stderr_tail)
