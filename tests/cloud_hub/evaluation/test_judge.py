from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_hub.evaluation.calibration import agreement, load_judgements
from cloud_hub.evaluation.judge import (
    RUBRIC_SYSTEM,
    JudgeScorer,
    LlamaCppJudge,
    compare,
    parse_choice,
    parse_rating,
    rubric_prompt,
)
from models.manifest import artifact_path
from shared.telemetry import TelemetryEvent


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Rating: [[7]]", 7.0),
        ("Rating: 8", 8.0),
        ("[[9.5]]", 9.5),
        ("6 — decent", 6.0),
        ("[[42]]", None),
        ("?", None),
    ],
)
def test_parse_rating(text: str, value: float | None) -> None:
    assert parse_rating(text) == value


def test_parse_choice() -> None:
    assert parse_choice("[[A]]") == "A"
    assert parse_choice("verdict: [[C]]") == "tie"
    assert parse_choice("A is better") is None


def test_agreement_statistics() -> None:
    perfect = agreement([2.0, 9.0, 10.0, 3.0], [2.0, 9.0, 10.0, 3.0])
    assert perfect.spearman == pytest.approx(1.0) and perfect.kappa == pytest.approx(1.0) and perfect.mae == 0
    constant = agreement([5.0] * 4, [2.0, 9.0, 10.0, 3.0])
    assert constant.pearson == 0.0 and constant.kappa == 0.0 and constant.pass_agreement == 0.5
    inverted = agreement([10.0, 2.0, 1.0, 9.0], [2.0, 9.0, 10.0, 3.0])
    assert inverted.spearman < -0.9 and inverted.kappa < 0


def test_best_pass_mark_adapts_to_a_compressed_scale() -> None:
    # a judge that ranks perfectly but never leaves 5..6 still separates at its own mark
    judge = [5.1, 5.2, 5.3, 5.8, 5.9, 6.0]
    gpt4 = [2.0, 3.0, 1.0, 9.0, 10.0, 8.0]
    result = agreement(judge, gpt4)
    assert result.kappa == 0.0  # at the fixed mark of 7 it never passes anything
    assert result.best_pass_at == 5.8 and result.best_balanced_accuracy == 1.0
    assert len(result.pairs) == 6


def test_calibration_sample_is_balanced(data_dir: Path) -> None:
    rows = load_judgements(data_dir, 20, seed=1)
    assert len(rows) == 20
    assert sum(r["score"] >= 7 for r in rows) == 10
    assert all("user_prompt" in r for r in rows)


@pytest.fixture(scope="module")
def judge(models_dir: Path) -> Iterator[LlamaCppJudge]:
    j = LlamaCppJudge(artifact_path("smollm2-135m-instruct", models_dir), n_ctx=2048, n_threads=2)
    yield j
    j.close()
    j.close()  # idempotent


@pytest.mark.slow
def test_llamacpp_judge_rates_and_compares(judge: LlamaCppJudge) -> None:
    rating = judge.rating(RUBRIC_SYSTEM, rubric_prompt("What is 2 + 2?", "2 + 2 = 4."))
    assert rating is not None and 1.0 <= rating <= 10.0
    result = compare(judge, "What is 2 + 2?", "4", "5")
    assert result.first in ("A", "B", "tie", None) and result.second in ("A", "B", "tie", None)
    if result.preference is not None:
        assert result.first == result.second == result.preference
    verdict = JudgeScorer(judge).score(TelemetryEvent(prompt="What is 2 + 2?", completion="4"))
    assert verdict is not None and 0.0 <= verdict.score <= 1.0
    assert verdict.passed == (verdict.score >= (7 - 1) / 9)
    assert JudgeScorer(judge).score(TelemetryEvent(completion="4")) is None  # no prompt captured


@pytest.mark.slow
def test_runner_uses_the_judge_within_budget_and_collects_pairs(judge: LlamaCppJudge, tmp_path: Path) -> None:
    from cloud_hub.evaluation.runner import EvalConfig, EvalRunner
    from cloud_hub.telemetry.store import TelemetryStore
    from shared.wire import TelemetryBatch

    questions = [
        "What is the capital of France?",
        "Name a primary colour.",
        "What is 3 times 3?",
        "Say hello.",
    ]
    events = [
        TelemetryEvent(
            route="edge_local", domain="general", prompt=q, completion="I am not sure.", response_id=f"r{i}"
        )
        for i, q in enumerate(questions)
    ]
    store = TelemetryStore(tmp_path / "hub.db")
    store.ingest("edge", TelemetryBatch("b", [e.to_attributes() for e in events]))
    answers: list[str] = []

    def stronger(prompt: str) -> str:  # the stronger tier: here the same local model, answering
        answers.append(judge.complete("You are a helpful assistant. Answer briefly.", prompt, max_tokens=16))
        return answers[-1]

    runner = EvalRunner(store, judge=judge, stronger=stronger, judge_pass_at=5.0)
    outcome = runner.run(EvalConfig(judge_budget=3, pairwise_rate=1.0, min_n=1))
    # the budget is three answers; each is rated once and compared in both orders: nine calls
    assert outcome.summary["judge_calls"] == 9
    assert len(outcome.rows) == 3  # the fourth answer was over budget: unscored, not guessed
    assert all(r.scorer.startswith("judge:") for r in outcome.rows)
    assert len(answers) == 3
    for pair in outcome.pairs:
        assert {pair.chosen, pair.rejected} == {"I am not sure.", answers[questions.index(pair.prompt)]}
    lost = [r for r in outcome.rows if r.failure == "lost_pairwise"]
    assert len(lost) == sum(p.rejected == "I am not sure." for p in outcome.pairs)
    store.close()
