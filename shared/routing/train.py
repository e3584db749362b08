"""Regenerate the classification heads and thresholds in ``models/routing/`` from the data directory.

    python -m shared.routing.train [--data-dir DIR] [--out models/routing]

Deterministic: rows are sampled by a hash of their text, optimisers start from zero, and the same
data and embedding model give the same files. Only training material is used: GSM8K train, MBPP's
train task ids, MMLU dev, RouterDC's ARC-Easy/MMLU train sets, Quora questions (open chat), and for
the domain head and success head only the hash *calibration half* of RouteLLM's rows — the half the
benchmark never reports on. Success heads are proxies: ``frontier`` learns from GPT-4's recorded
outcomes, ``oss`` from Mixtral-8x7B, ``edge`` from Mistral-7B (RouterBench); ``finetuned`` starts
as a copy of ``oss`` until telemetry recalibrates it.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from shared import paths
from shared.routing.calibration import calibrate
from shared.routing.datasets import GPT4, MIXTRAL, OutcomeTable, concat, load_outcomes
from shared.routing.embed import CachedEmbedder, default_cache_file, embedder_id, load_default_embedder
from shared.routing.estimators import AutoLogistic, hash_folds, hash_unit, out_of_fold
from shared.routing.heads import (
    DOMAIN_FILE,
    HEADS_DIR,
    HEADS_VERSION,
    MANIFEST_FILE,
    SUCCESS_FILE,
    TASK_FILE,
    THRESHOLDS_FILE,
)
from shared.routing.linear import LinearHead, train_softmax_head
from shared.routing.subjects import subject_domain
from shared.taxonomy import Domain, TaskType, Tier

PER_CLASS = 800
RB_MODELS = {
    Tier.EDGE: "mistralai/mistral-7b-chat",
    Tier.OSS: "mistralai/mixtral-8x7b-chat",
    Tier.FRONTIER: GPT4,
}


def _sample(texts: Iterable[str], n: int, salt: str) -> list[str]:
    unique = sorted({t.strip() for t in texts if t.strip()})
    return sorted(unique, key=lambda t: hash_unit(t, salt))[:n]


def _jsonl(path: Path) -> list[dict[str, object]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _mmlu_dev(data: Path) -> list[tuple[str, str]]:
    out = []
    for f in sorted((data / "text_eval/mmlu/dev").glob("*_dev.csv")):
        with f.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                options = "\n".join(f"{k}. {row[f'choice{i}']}" for i, k in enumerate("ABCD"))
                out.append((f"{row['question']}\n{options}", f.stem.removesuffix("_dev")))
    return out


def task_corpus(data: Path) -> dict[TaskType, list[str]]:
    gsm = [str(r["question"]) for r in _jsonl(data / "text_eval/gsm8k/train.jsonl")]
    # MBPP's train split is task ids 601-974; the rest is test, validation or few-shot prompts
    mbpp = [
        str(r["text"])
        for r in _jsonl(data / "text_eval/mbpp/mbpp.jsonl")
        if 601 <= int(str(r["task_id"])) <= 974
    ]
    knowledge = [q for q, _ in _mmlu_dev(data)]
    for name in ("arc_easy_train.json", "mmlu_train.json"):
        knowledge += [
            str(r["question"]) for r in json.loads((data / "routing/routerdc_model7" / name).read_text())
        ]
    wino = load_outcomes(data / "routing/routerbench/winograde_train.csv").prompts
    chat = [str(r["text_a"]) for r in _jsonl(data / "paraphrase/qqp/qqp_pairs_dev.jsonl.gz")]
    return {
        TaskType.MATH: _sample(gsm, PER_CLASS, "task"),
        TaskType.CODE: _sample(mbpp, PER_CLASS, "task"),
        TaskType.KNOWLEDGE: _sample(knowledge, PER_CLASS, "task"),
        TaskType.REASONING: _sample(wino, PER_CLASS, "task"),
        TaskType.CHAT: _sample(chat, PER_CLASS, "task"),
    }


def _calibration_half(table: OutcomeTable) -> OutcomeTable:
    return table.subset([i for i, p in enumerate(table.prompts) if hash_unit(p) < 0.5])


def domain_corpus(data: Path, tasks: dict[TaskType, list[str]]) -> dict[Domain, list[str]]:
    by: dict[Domain, list[str]] = {d: [] for d in Domain}
    for q, subject in _mmlu_dev(data):
        by[subject_domain(subject)].append(q)
    mmlu = _calibration_half(load_outcomes(data / "routing/routellm/routellm/evals/mmlu/responses"))
    for q, subject in zip(mmlu.prompts, mmlu.groups, strict=True):
        by[subject_domain(subject)].append(q)
    by[Domain.MATH] = list(tasks[TaskType.MATH])
    by[Domain.CODE] = list(tasks[TaskType.CODE])
    by[Domain.GENERAL] = list(tasks[TaskType.CHAT])
    return {d: _sample(v, PER_CLASS, "domain") for d, v in by.items()}


def success_table(data: Path) -> tuple[OutcomeTable, OutcomeTable]:
    """(all rows, RouterBench rows) with columns edge/oss/frontier; unknown outcomes are NaN."""
    tiers = [Tier.EDGE, Tier.OSS, Tier.FRONTIER]
    parts = []
    for rel in ("gsm8k/gsm8k_responses.csv", "mmlu/responses"):
        t = _calibration_half(load_outcomes(data / "routing/routellm/routellm/evals" / rel))
        unknown = np.full((len(t), 1), np.nan)  # no edge-sized model answered these
        cols = [t.models.index(MIXTRAL), t.models.index(GPT4)]
        scores = np.hstack([unknown, t.scores[:, cols]])
        costs = np.hstack([unknown, t.costs[:, cols]])
        parts.append(OutcomeTable(t.name, t.prompts, [x.value for x in tiers], scores, costs))
    rb_parts = []
    for f in sorted((data / "routing/routerbench").glob("*.csv")):
        t = load_outcomes(f)
        cols = [t.models.index(RB_MODELS[x]) for x in tiers]
        rb_parts.append(
            OutcomeTable(t.name, t.prompts, [x.value for x in tiers], t.scores[:, cols], t.costs[:, cols])
        )
    rb = concat(rb_parts, "routerbench").complete()
    return concat([*parts, rb], "success"), rb


def _labels_xy(
    corpus: dict[TaskType, list[str]] | dict[Domain, list[str]], emb: CachedEmbedder
) -> tuple[tuple[str, ...], NDArray[np.float64], NDArray[np.intp]]:
    labels = tuple(k.value for k in corpus)
    texts = [t for k in corpus for t in corpus[k]]  # type: ignore[index]
    y = np.array([i for i, k in enumerate(corpus) for _ in corpus[k]], dtype=np.intp)  # type: ignore[index]
    return labels, emb.embed(texts).astype(np.float64), y


def train_all(data: Path, out: Path, emb: CachedEmbedder) -> dict[str, object]:
    tasks = task_corpus(data)
    labels, x, y = _labels_xy(tasks, emb)
    task_head = train_softmax_head(x, y, labels, l2=1e-3, version=HEADS_VERSION)
    labels, x, y = _labels_xy(domain_corpus(data, tasks), emb)
    domain_head = train_softmax_head(x, y, labels, l2=1e-3, version=HEADS_VERSION)

    table, rb = success_table(data)
    xs = emb.embed(table.prompts)
    est = AutoLogistic()
    est.fit(xs, table.scores)
    heads = est.heads
    w = np.concatenate([heads[0].weights, heads[1].weights, heads[1].weights, heads[2].weights], axis=1)
    b = np.concatenate([heads[0].bias, heads[1].bias, heads[1].bias, heads[2].bias])
    tiers = (Tier.EDGE.value, Tier.OSS.value, Tier.FINETUNED.value, Tier.FRONTIER.value)
    l2 = ",".join(str(v) for v in est.chosen)
    success_head = LinearHead("sigmoid", tiers, w, b, {"version": HEADS_VERSION, "l2": l2})

    # thresholds: replay RouterBench rows (all three proxies answered, real USD cost) out of fold
    xr = emb.embed(rb.prompts)
    oof = out_of_fold(est.frozen(), xr, rb.scores, hash_folds(rb.prompts, 5))
    thresholds = calibrate(
        oof, np.nanmean(rb.costs, axis=0), rb.scores, rb.costs, rb.models, Tier.FRONTIER.value
    )

    out.mkdir(parents=True, exist_ok=True)
    task_head.save(out / TASK_FILE)
    domain_head.save(out / DOMAIN_FILE)
    success_head.save(out / SUCCESS_FILE)
    thresholds.save(out / THRESHOLDS_FILE)
    manifest = {
        "version": HEADS_VERSION,
        "embedding": emb.model_id,
        "task_labels": list(task_head.labels),
        "domain_labels": list(domain_head.labels),
        "success_rows": len(table),
        "success_l2": l2,
        "command": "python -m shared.routing.train",
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.routing.train", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=HEADS_DIR)
    parser.add_argument("--embedding-cache", type=Path, default=None)
    args = parser.parse_args(argv)
    emb = CachedEmbedder(load_default_embedder(), args.embedding_cache or default_cache_file(), embedder_id())
    try:
        manifest = train_all(args.data_dir or paths.data_dir(), args.out, emb)
    finally:
        emb.close()
    print(json.dumps(manifest, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
