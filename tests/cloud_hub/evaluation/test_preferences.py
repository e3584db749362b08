from __future__ import annotations

import json
from pathlib import Path

from cloud_hub.evaluation.results import export_run
from cloud_hub.evaluation.runner import EvalConfig, EvalRunner
from cloud_hub.telemetry.store import TelemetryStore
from tests.cloud_hub.evaluation.conftest import batch, corrupt, traffic


def test_reference_checks_turn_right_and_wrong_answers_into_preference_pairs(
    tmp_path: Path, gsm8k_answers: list[tuple[str, str, str]]
) -> None:
    store = TelemetryStore(tmp_path / "hub.db")
    # the same ten questions on two tiers: the frontier answers every one right, the edge every
    # one wrong, twice over (an identical wrong answer is one pair, not two)
    right = traffic(gsm8k_answers, "frontier", 10, wrong_share=0.0, seed=4)
    wrong = traffic(gsm8k_answers, "edge_local", 10, wrong_share=1.0, seed=4)
    again = traffic(gsm8k_answers, "edge_local", 10, wrong_share=1.0, seed=4)
    # a question nobody got right gives no pair: there is no answer to prefer
    lonely = traffic(gsm8k_answers[200:], "hub_oss", 1, wrong_share=1.0, seed=0)
    store.ingest("edge-1", batch([*right, *wrong, *again, *lonely]))
    runner = EvalRunner(store)
    outcome = runner.run(EvalConfig(per_stratum=100, min_n=1))
    assert outcome.summary["preference_pairs"] == len(outcome.pairs) == 10
    by_prompt = {p.prompt: p for p in outcome.pairs}
    for event in right:
        pair = by_prompt[event.prompt or ""]
        assert pair.source == "reference" and (pair.domain, pair.route) == ("math", "edge_local")
        assert pair.chosen == event.completion and pair.rejected == corrupt(event.completion or "")
    assert lonely[0].prompt not in by_prompt
    counts = export_run(store, runner.results, outcome.run_id, tmp_path / "out")
    lines = (tmp_path / "out" / "preferences.jsonl").read_text().splitlines()
    assert counts["preferences"] == len(lines) == 10
    assert {json.loads(line)["source"] for line in lines} == {"reference"}
    store.close()
