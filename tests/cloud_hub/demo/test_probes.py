"""The demo's requests carry what the hub's evaluation needs: each graded item's known answer as a
probe in the format the matching reference check reads, content capture on the demo's edge, and one
end user per request so that popular questions asked again are not taken for re-asks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cloud_hub.demo.deploy import _edge_yaml
from cloud_hub.demo.items import DEFAULT_SOURCES, Item, load_items
from cloud_hub.demo.traffic import ROUTED, Pass, request_body
from cloud_hub.demo.workload import Request
from cloud_hub.evaluation.scorers import CodeTestScorer, GSM8KScorer, MultipleChoiceScorer, Scorer
from shared.config import EdgeSettings, load_settings
from shared.taxonomy import Tier
from shared.telemetry import TelemetryEvent


@pytest.fixture(scope="module")
def items(data_dir: Path) -> list[Item]:
    loaded, _ = load_items(data_dir, DEFAULT_SOURCES)
    return [i for i in loaded if i.split == "eval"]


def _probe_event(item: Item, p: Pass, completion: str) -> TelemetryEvent:
    """What the edge stores for this request's answer: the body's probe becomes the reference."""
    probe = request_body(Request(0, item, "acme"), p)["edgeroute"]["probe"]  # type: ignore[index]
    return TelemetryEvent(completion=completion, reference=probe["reference"], reference_kind=probe["kind"])


def _first(items: list[Item], source: str) -> Item:
    return next(i for i in items if i.source == source)


def test_graded_items_are_probes_and_chat_is_not(items: list[Item]) -> None:
    chat = _first(items, "mt_bench")
    assert chat.probe_kind is None and "edgeroute" not in request_body(Request(0, chat, "acme"), Pass(ROUTED))
    kinds = {i.source: i.probe_kind for i in items}
    assert kinds["gsm8k"] == "gsm8k" and kinds["mbpp"] == "code" and kinds["mmlu"] == "mcq"
    baseline = request_body(Request(3, _first(items, "mmlu"), "acme"), Pass("oss", Tier.OSS))
    overrides = baseline["edgeroute"]
    assert isinstance(overrides, dict) and overrides["route"] == "hub" and overrides["cache"] == "bypass"
    assert overrides["probe"]["kind"] == "mcq"
    # one end user per request and pass: a repeat is someone else asking, not a re-ask
    users = {
        request_body(Request(s, chat, "acme"), p)["user"]
        for s in (1, 2)
        for p in (Pass(ROUTED), Pass("oss", Tier.OSS))
    }
    assert len(users) == 4


def test_each_probe_is_graded_by_the_evaluation_reference_check(items: list[Item], data_dir: Path) -> None:
    checks: list[tuple[Item, Scorer, str, str]] = []
    gsm = _first(items, "gsm8k")
    checks.append((gsm, GSM8KScorer(), f"So the answer is {gsm.reference}.", "The answer is 123456789."))
    mcq = _first(items, "mmlu")
    wrong = next(letter for letter in "ABCD" if letter != mcq.reference)
    checks.append((mcq, MultipleChoiceScorer(), f"{mcq.reference}", wrong))
    code = _first(items, "mbpp")
    with (data_dir / "text_eval/mbpp/mbpp.jsonl").open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    solution = next(
        r["code"] for r in rows if " ".join(str(r["text"]).split()) == " ".join(code.prompt.split())
    )
    checks.append((code, CodeTestScorer(), f"```python\n{solution}\n```", "```python\nprint('no')\n```"))
    for item, scorer, right, bad in checks:
        good_verdict = scorer.score(_probe_event(item, Pass(ROUTED), right))
        bad_verdict = scorer.score(_probe_event(item, Pass(ROUTED), bad))
        assert good_verdict is not None and good_verdict.passed, (item.source, good_verdict)
        assert bad_verdict is not None and not bad_verdict.passed, (item.source, bad_verdict)


def test_the_demo_edge_captures_content_unless_told_otherwise(tmp_path: Path) -> None:
    written = _edge_yaml(tmp_path / "edge.yaml", None, {"acme": "sk-demo-acme"})
    assert load_settings(EdgeSettings, yaml_file=written, home=tmp_path).telemetry_capture_content
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"telemetry_capture_content": False}))
    kept = _edge_yaml(tmp_path / "edge2.yaml", base, {"acme": "sk-demo-acme"})
    assert not load_settings(EdgeSettings, yaml_file=kept, home=tmp_path).telemetry_capture_content


def test_the_llamacpp_hub_config_is_the_default_hub_but_for_the_open_tier_backend(tmp_path: Path) -> None:
    from cloud_hub.demo import deploy
    from shared.config import HubSettings

    light = load_settings(
        HubSettings, yaml_file=Path(deploy.__file__).parent / "hub-llamacpp.yaml", home=tmp_path
    )
    default = HubSettings(home=tmp_path)
    assert [m.backend for m in light.models] == ["llamacpp", "replay", "replay"]
    assert [m.backend for m in default.models] == ["vllm", "replay", "replay"]
    for ours, theirs in zip(light.models, default.models, strict=True):
        assert ours.model_dump(exclude={"backend"}) == theirs.model_dump(exclude={"backend"})
    assert light.default_model == default.default_model
