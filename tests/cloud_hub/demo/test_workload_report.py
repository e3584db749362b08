from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.console import Console

from cloud_hub.demo.replay import Record, is_correct
from cloud_hub.demo.report import FrontierModel, FrontierPrice, print_report, summarise
from cloud_hub.demo.workload import WorkItem, build_workload
from shared.paraphrase import qqp_split


def test_workload_is_deterministic_mixed_and_has_repeats(data_dir: Path) -> None:
    a = build_workload(data_dir, 50)
    b = build_workload(data_dir, 50)
    assert [w.prompt for w in a] == [w.prompt for w in b]
    kinds = Counter(w.kind for w in a)
    assert set(kinds) == {"chat", "math", "mcq", "code", "writing"}
    repeats = [w for w in a if w.repeat_of is not None]
    assert repeats, "real traffic repeats itself; the workload must too"
    verbatim = [w for w in repeats if a[w.repeat_of or 0].prompt == w.prompt]
    assert verbatim and len(verbatim) < len(repeats)
    # paraphrases come from pairs no cache verifier was fitted or calibrated on
    held_out = {(p.a, p.b) for p in qqp_split("eval", data_dir)}
    paraphrased = [(a[w.repeat_of or 0].prompt, w.prompt) for w in repeats if w not in verbatim]
    assert paraphrased and all(pair in held_out for pair in paraphrased)
    assert all(w.reference for w in a if w.kind in {"math", "mcq"})


def test_reference_checks() -> None:
    assert is_correct(WorkItem("math", "q", reference="1234"), "so 3 + 4 = 7\n#### 1,234") is True
    assert is_correct(WorkItem("math", "q", reference="18"), "The answer is 18.") is True
    assert is_correct(WorkItem("math", "q", reference="18"), "no digits") is False
    assert is_correct(WorkItem("mcq", "q", reference="A"), "A") is True
    assert is_correct(WorkItem("mcq", "q", reference="A"), "D") is False
    assert is_correct(WorkItem("chat", "q"), "anything") is None


def test_summary_counts_routes_cost_and_quality() -> None:
    item = WorkItem("mcq", "q", reference="A")
    recs = [
        Record(
            item,
            route="exact_cache",
            prompt_tokens=100,
            completion_tokens=10,
            correct=True,
            baseline_correct=True,
        ),
        Record(
            item,
            route="edge_local",
            cost_usd=1e-6,
            prompt_tokens=100,
            completion_tokens=10,
            correct=False,
            baseline_correct=True,
        ),
        Record(
            item,
            route="hub_oss",
            cost_usd=1e-5,
            prompt_tokens=100,
            completion_tokens=10,
            correct=True,
            baseline_correct=True,
        ),
        Record(
            item,
            route="frontier",
            cost_usd=1e-3,
            prompt_tokens=100,
            completion_tokens=10,
            correct=True,
            baseline_correct=False,
        ),
        Record(item, error="boom"),
    ]
    s = summarise(recs, FrontierPrice(2.5, 10.0))
    assert s["errors"] == 1
    assert s["share_without_frontier"] == 0.75
    assert s["share_without_hub_gpu"] == 0.5
    assert s["router_accuracy"] == 0.75 and s["always_hub_accuracy"] == 0.75
    assert abs(float(s["always_frontier_cost_usd"]) - 4 * (100 * 2.5 + 10 * 10.0) / 1e6) < 1e-12  # type: ignore[arg-type]


def test_report_names_the_frontier_stand_in() -> None:
    item = WorkItem("chat", "q")
    recs = [
        Record(item, route="frontier", model="qwen2.5-coder-1.5b-instruct", cost_usd=1e-4),
        Record(item, route="hub_oss", model="qwen2.5-coder-0.5b-instruct", cost_usd=1e-6),
    ]
    configured = [
        FrontierModel("qwen2.5-coder-1.5b-instruct", "llamacpp"),
        FrontierModel("gpt-x", "openai_http"),
    ]
    summary = summarise(recs, FrontierPrice(), configured)
    tier = summary["frontier_tier"]
    assert isinstance(tier, dict)
    assert tier["served_by"] == ["qwen2.5-coder-1.5b-instruct"]
    assert [f["stand_in"] for f in tier["configured"]] == [True, False]
    console = Console(record=True, width=400)
    print_report(summary, console)
    text = console.export_text()
    assert "qwen2.5-coder-1.5b-instruct (llamacpp backend) stood in for a frontier API" in text
    assert "frontier API: gpt-x (openai_http)" in text
