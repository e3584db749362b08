from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloud_hub.evaluation.publish import local_tracking_uri, log_run
from cloud_hub.evaluation.report import build_report, render_markdown
from cloud_hub.evaluation.results import export_run
from cloud_hub.evaluation.runner import EvalConfig, EvalRunner
from cloud_hub.telemetry.store import TelemetryStore
from shared.telemetry import TelemetryEvent
from tests.cloud_hub.evaluation.conftest import batch, traffic


@pytest.fixture
def store(tmp_path: Path, gsm8k_answers: list[tuple[str, str, str]]) -> TelemetryStore:
    s = TelemetryStore(tmp_path / "hub.db")
    s.ingest("edge-1", batch(traffic(gsm8k_answers, "hub_oss", 120, wrong_share=0.0, seed=1)))
    # a deliberately degraded route: most of its answers are made wrong
    s.ingest("edge-1", batch(traffic(gsm8k_answers, "edge_local", 120, wrong_share=0.6, seed=2)))
    return s


def test_degraded_route_is_flagged_and_healthy_is_not(store: TelemetryStore) -> None:
    outcome = EvalRunner(store).run(EvalConfig(per_stratum=60, targets={"math": 0.8}))
    report = outcome.report
    degraded, healthy = report.cell("math", "edge_local"), report.cell("math", "hub_oss")
    assert degraded is not None and healthy is not None
    assert degraded.status == "below", degraded
    assert degraded.ci_high < 0.8
    assert healthy.status != "below", healthy
    assert healthy.ci_low <= healthy.pass_rate <= healthy.ci_high
    assert [c.route for c in report.flagged()] == ["edge_local"]
    assert report.failure_modes.get("wrong_answer", 0) >= 20
    assert "**BELOW**" in render_markdown(report)
    assert outcome.summary["scored"] == 120
    store.close()


def test_feedback_and_regeneration_score_answers_without_references(store: TelemetryStore) -> None:
    events = [
        TelemetryEvent(route="edge_local", domain="general", response_id=f"chat-{i}", completion="hello")
        for i in range(4)
    ]
    extra = [
        TelemetryEvent(kind="feedback", response_id="chat-0", rating=-1.0),
        TelemetryEvent(kind="feedback", response_id="chat-1", rating=1.0),
        TelemetryEvent(route="edge_local", domain="general", response_id="chat-9", regeneration=True,
                       regenerates="chat-2"),
    ]  # fmt: skip
    store.ingest("edge-2", batch(events + extra, "b2"))
    outcome = EvalRunner(store).run(EvalConfig(per_stratum=200))
    by_id = {r.event_id: r for r in outcome.rows}
    verdicts = {ev.response_id: by_id.get(ev.event_id) for ev in events}
    assert verdicts["chat-0"] is not None and verdicts["chat-0"].failure == "negative_feedback"
    assert verdicts["chat-1"] is not None and verdicts["chat-1"].passed
    assert verdicts["chat-2"] is not None and verdicts["chat-2"].failure == "regenerated"
    assert verdicts["chat-3"] is None  # nothing applies and no judge: left unscored, not guessed
    store.close()


def test_export_and_mlflow(tmp_path: Path, store: TelemetryStore) -> None:
    runner = EvalRunner(store)
    outcome = runner.run(EvalConfig(per_stratum=30))
    counts = export_run(store, runner.results, outcome.run_id, tmp_path / "out")
    lines = (tmp_path / "out" / "failures.jsonl").read_text().splitlines()
    assert counts["failures"] == len(lines) == sum(not r.passed for r in outcome.rows) > 0
    first = json.loads(lines[0])
    assert first["failure_mode"] and first["prompt"] and first["completion"] and first["reference"]
    assert (tmp_path / "out" / "preferences.jsonl").exists()

    import mlflow

    uri = local_tracking_uri(tmp_path / "home")
    mlflow_id = log_run(uri, outcome.run_id, {"per_stratum": 30}, outcome.summary, outcome.report,
                        [tmp_path / "out" / "failures.jsonl"])  # fmt: skip
    run = mlflow.MlflowClient(tracking_uri=uri).get_run(mlflow_id)
    assert run.data.params["per_stratum"] == "30"
    assert run.data.metrics["scored"] == outcome.summary["scored"]
    assert "pass_rate.math.edge_local" in run.data.metrics
    store.close()


def test_report_rebuilds_from_stored_results(store: TelemetryStore) -> None:
    runner = EvalRunner(store)
    outcome = runner.run(EvalConfig(per_stratum=40, targets={"math": 0.8}))
    assert runner.results.latest_run() == outcome.run_id
    again = build_report(outcome.run_id, runner.results.results(outcome.run_id), {"math": 0.8})
    assert again.cells == outcome.report.cells
    store.close()


class _FixedJudge:
    """A stand-in judge model: every answer rates 8, every comparison prefers the first answer."""

    name = "fixed"

    def __init__(self) -> None:
        self.calls = 0

    def complete(self, system: str, user: str, max_tokens: int = 12) -> str:
        self.calls += 1
        return "[[A]]"

    def rating(self, system: str, user: str) -> float | None:
        self.calls += 1
        return 8.0


def test_judge_calls_are_the_calls_made_and_unreadable_answers_cost_no_budget(tmp_path: Path) -> None:
    store = TelemetryStore(tmp_path / "hub.db")
    # three open answers with their prompt captured, five whose prompt the edge did not capture
    readable = [
        TelemetryEvent(
            route="edge_local", prompt=f"Tell me about {t}.", completion="It is nice.", response_id=t
        )
        for t in ("tea", "rain", "moss")
    ]
    unreadable = [
        TelemetryEvent(route="edge_local", completion="It is nice.", response_id=f"u{i}") for i in range(5)
    ]
    store.ingest("edge-1", batch([*readable, *unreadable]))
    judge = _FixedJudge()
    outcome = EvalRunner(store, judge=judge).run(EvalConfig(judge_budget=3, min_n=1))
    assert judge.calls == 3
    assert outcome.summary["judge_calls"] == judge.calls
    assert len(outcome.rows) == 3  # the budget went to the answers the judge could read
    assert all(r.scorer == "judge:fixed" for r in outcome.rows)
    again = EvalRunner(store, judge=judge).run(EvalConfig(judge_budget=100, min_n=1))
    assert again.summary["judge_calls"] == 3  # per run, not since the judge was opened
    store.close()


def test_mlflow_logs_each_metric_once(tmp_path: Path, store: TelemetryStore) -> None:
    import mlflow

    outcome = EvalRunner(store).run(EvalConfig(per_stratum=30, targets={"math": 0.8}))
    uri = local_tracking_uri(tmp_path / "home")
    mlflow_id = log_run(uri, outcome.run_id, {}, outcome.summary, outcome.report, [])
    client = mlflow.MlflowClient(tracking_uri=uri)
    history = client.get_metric_history(mlflow_id, "flagged_cells")
    assert [m.value for m in history] == [outcome.summary["flagged_cells"]] == [1.0]
    store.close()


async def test_a_replayed_answer_without_text_is_left_unscored(tmp_path: Path) -> None:
    from cloud_hub.backends.replay import Recorded, ReplayBackend
    from shared.wire import ChatMessage, SamplingParams

    question = "Which planet is largest? A) Mars B) Jupiter C) Venus D) Mercury"
    replay = ReplayBackend("gpt-4", {question: Recorded(None, 1.0, None, "gpt-4", "mmlu.csv")})
    placeholder = await replay.generate([ChatMessage("user", question)], SamplingParams(max_tokens=8))
    store = TelemetryStore(tmp_path / "hub.db")
    events = [
        TelemetryEvent(
            route="frontier",
            domain="stem",
            reference="B",
            reference_kind="mcq",
            prompt=question,
            completion=text,
        )
        for text in (placeholder.text, "B")
    ]
    store.ingest("edge-1", batch(events))
    outcome = EvalRunner(store).run(EvalConfig(min_n=1))
    assert outcome.summary["replayed_without_text"] == 1
    assert [(r.scorer, r.passed) for r in outcome.rows] == [("reference:mcq", True)]  # not a no_answer
    store.close()
