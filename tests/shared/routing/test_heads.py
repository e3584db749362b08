from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shared.embedding import OnnxEmbedder
from shared.routing.datasets import load_outcomes
from shared.routing.estimators import hash_unit
from shared.routing.heads import ClassifierHeads, rule_task
from shared.routing.subjects import SUBJECT_DOMAIN, subject_domain
from shared.taxonomy import Domain, Modality, TaskType, Tier


@pytest.fixture(scope="module")
def embedder(models_dir: Path) -> Iterator[OnnxEmbedder]:
    with OnnxEmbedder(models_dir / "minilm-l6-v2-onnx") as e:
        yield e


@pytest.fixture(scope="module")
def heads() -> ClassifierHeads:
    return ClassifierHeads.load()


def test_every_mmlu_subject_has_a_domain(data_dir: Path) -> None:
    subjects = {p.stem.removesuffix("_dev") for p in (data_dir / "text_eval/mmlu/dev").glob("*_dev.csv")}
    assert len(subjects) == 57 and subjects == set(SUBJECT_DOMAIN)
    assert subject_domain("not a subject") is Domain.GENERAL


def test_rules_cover_task_types_without_training_data() -> None:
    assert rule_task("Translate 'good morning' into French.") is TaskType.TRANSLATION
    assert rule_task("Extract all dates from the following text: ...") is TaskType.EXTRACTION
    assert rule_task("Write a short poem about the sea") is TaskType.WRITING
    assert rule_task("What is 2 + 2?") is None


def _held_out(data_dir: Path) -> dict[str, list[str]]:
    with (data_dir / "text_eval/gsm8k/test.jsonl").open(encoding="utf-8") as fh:
        gsm = [json.loads(line)["question"] for line in fh][:100]
    with (data_dir / "text_eval/mbpp/mbpp.jsonl").open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    mbpp = [r["text"] for r in rows if 11 <= r["task_id"] <= 510][:100]  # MBPP's test split
    return {"math": gsm, "code": mbpp}


def test_task_head_on_held_out_questions(
    data_dir: Path, embedder: OnnxEmbedder, heads: ClassifierHeads
) -> None:
    for task, texts in _held_out(data_dir).items():
        x = embedder.embed(texts)
        got = [heads.classify(v, t).task for v, t in zip(x, texts, strict=True)]
        assert np.mean([g == task for g in got]) > 0.9, task


def test_domain_head_on_benchmark_rows_it_never_saw(
    data_dir: Path, embedder: OnnxEmbedder, heads: ClassifierHeads
) -> None:
    mmlu = load_outcomes(data_dir / "routing/routellm/routellm/evals/mmlu/responses")
    rows = [i for i, p in enumerate(mmlu.prompts) if hash_unit(p) >= 0.5][::40]  # the reported half
    x = embedder.embed([mmlu.prompts[i] for i in rows])
    got = [heads.classify(v).domain for v in x]
    want = [subject_domain(mmlu.groups[i]).value for i in rows]
    # five-way subject groups, chance is about 0.2
    assert np.mean([g == w for g, w in zip(got, want, strict=True)]) > 0.65


def test_classification_shape_and_success_ordering(embedder: OnnxEmbedder, heads: ClassifierHeads) -> None:
    prompt = "Natalia sold clips to 48 friends in April and half as many in May. How many in total?"
    c = heads.classify(embedder.embed([prompt])[0], prompt, Modality.TEXT)
    assert c.task == "math" and c.domain == "math" and c.modality == "text"
    assert set(c.success) == {t.value for t in Tier}
    assert all(0.0 < p < 1.0 for p in c.success.values())
    assert c.success["frontier"] > c.success["edge"]
    with pytest.raises(ValueError, match="dims"):
        heads.classify(np.zeros(10, dtype=np.float32))
