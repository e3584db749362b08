from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from shared.telemetry import TelemetryEvent
from shared.wire import TelemetryBatch


@pytest.fixture(scope="session")
def gsm8k_answers(data_dir: Path) -> list[tuple[str, str, str]]:
    """(question, gold solution, GPT-4's published answer) for GSM8K test questions."""
    gold = {}
    for line in (data_dir / "text_eval/gsm8k/test.jsonl").read_text().splitlines():
        row = json.loads(line)
        gold[row["question"]] = row["answer"]
    path = data_dir / "routing/routellm/routellm/evals/gsm8k/gsm8k_responses.csv"
    with path.open(newline="") as f:
        return [(r["prompt"], gold[r["prompt"]], r["gpt-4-1106-preview_response"]) for r in csv.DictReader(f)]


def corrupt(answer: str) -> str:
    """A wrong final answer: the last line's number is changed."""
    return answer + "\n\nOn reflection, the answer is 999999."


def traffic(
    answers: list[tuple[str, str, str]],
    route: str,
    n: int,
    wrong_share: float,
    seed: int,
    **fields: object,
) -> list[TelemetryEvent]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        question, solution, response = answers[(i * 7 + seed) % len(answers)]
        completion = corrupt(response) if rng.random() < wrong_share else response
        out.append(
            TelemetryEvent(
                timestamp=1_700_000_000.0 + i,
                response_id=f"{route}-{seed}-{i}",
                route=route,
                domain="math",
                task="math",
                request_model=f"{route}-model",
                prompt=question,
                completion=completion,
                reference=solution,
                reference_kind="gsm8k",
                **fields,  # type: ignore[arg-type]
            )
        )
    return out


def batch(events: list[TelemetryEvent], batch_id: str = "b") -> TelemetryBatch:
    return TelemetryBatch(batch_id, [e.to_attributes() for e in events])
