from __future__ import annotations

import csv
import gzip
import json
from decimal import Decimal
from pathlib import Path

import pytest

from cloud_hub.evaluation.scorers import (
    CodeTestScorer,
    FailureMode,
    GSM8KScorer,
    MultipleChoiceScorer,
    extract_code,
    extract_letter,
    extract_number,
    surface_failure,
)
from shared.telemetry import TelemetryEvent


def test_gsm8k_scorer_agrees_with_published_correctness_labels(data_dir: Path) -> None:
    gold = {}
    for line in (data_dir / "text_eval/gsm8k/test.jsonl").read_text().splitlines():
        row = json.loads(line)
        gold[row["question"]] = row["answer"]
    path = data_dir / "routing/routellm/routellm/evals/gsm8k/gsm8k_responses.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    scorer = GSM8KScorer()
    agree = total = 0
    for row in rows:
        for model in ("mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"):
            event = TelemetryEvent(
                reference=gold[row["prompt"]], reference_kind="gsm8k", completion=row[f"{model}_response"]
            )
            verdict = scorer.score(event)
            assert verdict is not None
            agree += verdict.passed == (row[model] == "True")
            total += 1
    assert total == 2 * len(rows) > 2000
    assert agree / total >= 0.93  # RouteLLM graded with its own extraction; we match 94.6%


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so 5 + 3 = 8\n#### 8", "8"),
        ("The answer is $1,250.", "1250"),
        ("Therefore \\boxed{42}.", "42"),
        ("She has 3 apples and buys 4 more, 7 in total", "7"),
        ("-3.5 degrees", "-3.5"),
    ],
)
def test_extract_number(text: str, expected: str) -> None:
    assert extract_number(text) == Decimal(expected)


def test_gsm8k_without_a_number_is_a_format_failure() -> None:
    verdict = GSM8KScorer().score(
        TelemetryEvent(reference="#### 4", reference_kind="gsm8k", completion="no idea")
    )
    assert verdict is not None and verdict.failure is FailureMode.NO_ANSWER


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("B", "B"),
        ("The answer is (C).", "C"),
        ("Answer: d", "D"),
        ("A) Paris is right", "A"),
        ("maybe", None),
    ],
)
def test_extract_letter(text: str, letter: str | None) -> None:
    assert extract_letter(text) == letter


def test_mcq_scorer() -> None:
    scorer = MultipleChoiceScorer()
    right = scorer.score(TelemetryEvent(reference="C", reference_kind="mcq", completion="The answer is C"))
    wrong = scorer.score(TelemetryEvent(reference="C", reference_kind="mcq", completion="The answer is A"))
    assert right is not None and right.passed
    assert wrong is not None and not wrong.passed and wrong.failure is FailureMode.WRONG_ANSWER
    assert scorer.score(TelemetryEvent(reference="C", reference_kind="gsm8k", completion="C")) is None


def test_code_scorer_on_humaneval(data_dir: Path) -> None:
    with gzip.open(data_dir / "text_eval/humaneval/HumanEval.jsonl.gz", "rt") as f:
        tasks = [json.loads(line) for line in f][:3]
    scorer = CodeTestScorer()
    for task in tasks:
        tests = task["test"] + f"\ncheck({task['entry_point']})\n"
        good = f"```python\n{task['prompt']}{task['canonical_solution']}```"
        bad = f"{task['prompt']}    raise NotImplementedError\n"
        ok = scorer.score(TelemetryEvent(reference=tests, reference_kind="code", completion=good))
        ko = scorer.score(TelemetryEvent(reference=tests, reference_kind="code", completion=bad))
        assert ok is not None and ok.passed, ok
        assert ko is not None and not ko.passed and ko.failure is FailureMode.CODE_ERROR


def test_extract_code_prefers_the_longest_block() -> None:
    text = "Here:\n```python\nx = 1\n```\nand\n```python\ndef f():\n    return 2\n```"
    assert "def f" in extract_code(text)
    assert extract_code("def g(): pass") == "def g(): pass"


def test_surface_failures() -> None:
    assert surface_failure(TelemetryEvent(error_type="timeout")) is not None
    empty = surface_failure(TelemetryEvent(completion="  "))
    assert empty is not None and empty.failure is FailureMode.EMPTY
    refusal = surface_failure(TelemetryEvent(completion="I can't help with that."))
    assert refusal is not None and refusal.failure is FailureMode.REFUSAL
    assert surface_failure(TelemetryEvent(completion="Sure: 4")) is None
