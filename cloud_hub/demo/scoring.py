"""Grading answers, and the paired statistics the north-star report is made of.

A live answer is graded by the task's own rule (the option letter, the final number, or the task's
tests run in the sandbox). A replayed answer carries the score its source recorded for that exact
answer (RouterBench's and RouteLLM's graders; MT-Bench's GPT-4 judge, scaled to 0-1), which is also
the only grade an outcome-only row has. Open chat with neither is ungraded and never enters a
quality figure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from cloud_hub.demo.items import Item
from cloud_hub.demo.traffic import Record
from cloud_hub.evaluation.sandbox import CodeSandbox
from cloud_hub.evaluation.scorers import extract_code, extract_letter, extract_number

_CALLED = re.compile(r"assert\s+(?:not\s+)?\(?\s*(?:set\()?\s*([A-Za-z_]\w*)\s*\(")
_DEFINED = re.compile(r"^def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)
_BUILTINS = frozenset({"set", "sorted", "list", "tuple", "abs", "math", "round", "len", "str", "int"})


def mcq_letter(text: str) -> str | None:
    """Winogrande has two options and ARC/MMLU four; the first letter the answer commits to."""
    return extract_letter(text)


def code_under_test(answer: str, tests: str) -> str:
    """The answer's code, then its first function under the name the tests call when they differ:
    the recorded prompts never name the function, so a right answer under another name still passes."""
    code = extract_code(answer)
    called = [n for n in _CALLED.findall(tests) if n not in _BUILTINS]
    defined = _DEFINED.findall(code)
    alias = ""
    if called and defined and called[0] not in defined:
        alias = f"\n{called[0]} = {defined[0]}\n"
    return f"{code}\n{alias}\n{tests}\n"


class Grader:
    def __init__(self, sandbox: CodeSandbox | None = None) -> None:
        self.sandbox = sandbox or CodeSandbox(cpu_s=5, wall_s=10.0)

    def grade_text(self, item: Item, text: str) -> float | None:
        if item.reference is None:
            return None
        if item.kind == "math":
            got, want = extract_number(text), extract_number(item.reference)
            return float(got is not None and got == want)
        if item.kind == "code":
            return float(self.sandbox.run(code_under_test(text, item.reference)).passed)
        return float(mcq_letter(text) == item.reference)

    def grade(self, rec: Record) -> float | None:
        if not rec.ok:
            return None
        if rec.replayed:
            return rec.recorded_score
        return self.grade_text(rec.request.item, rec.text)


def paired_ratio_ci(
    router: Sequence[float],
    baseline: Sequence[float],
    weights: Sequence[float],
    *,
    rounds: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Ratio of weighted means and its 95% paired bootstrap interval, resampling items."""
    r, b, w = (np.asarray(v, dtype=np.float64) for v in (router, baseline, weights))
    if r.size == 0 or float(np.sum(w * b)) == 0.0:
        return float("nan"), float("nan"), float("nan")
    ratio = float(np.sum(w * r) / np.sum(w * b))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, r.size, size=(rounds, r.size))
    num = np.sum(w[idx] * r[idx], axis=1)
    den = np.sum(w[idx] * b[idx], axis=1)
    ok = den > 0
    ratios = num[ok] / den[ok]
    low, high = np.quantile(ratios, [0.025, 0.975]) if ratios.size else (np.nan, np.nan)
    return ratio, float(low), float(high)


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else None
