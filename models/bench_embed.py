"""Embedding speed and quality, int8 against fp32 of the same export, in one run.

    python -m models.bench_embed [--models-dir DIR] [--threads 2] [--single 300] [--batched 2048]

Texts are real Quora questions (``paraphrase/qqp`` in the data directory). Prints single-text
latency p50/p99, batch-32 throughput, the int8/fp32 ratios, the cosine between the two variants'
vectors, and how well each separates duplicate from non-duplicate question pairs (ROC AUC).
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from models.export_onnx import FP32_NAME, INT8_NAME
from models.manifest import artifact_path
from shared import paths
from shared.embedding import OnnxEmbedder

MODEL = "minilm-l6-v2-onnx"
Timings = list[float]
Embedders = dict[str, OnnxEmbedder]


def load_pairs(limit: int) -> tuple[list[str], list[str], npt.NDArray[np.int8]]:
    path = paths.data_dir() / "paraphrase" / "qqp" / "qqp_pairs_dev.jsonl.gz"
    a: list[str] = []
    b: list[str] = []
    labels: list[int] = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            a.append(row["text_a"])
            b.append(row["text_b"])
            labels.append(int(row["label"]))
            if len(a) >= limit:
                break
    return a, b, np.asarray(labels, dtype=np.int8)


def roc_auc(scores: npt.NDArray[np.float32], labels: npt.NDArray[np.int8]) -> float:
    """Probability that a random duplicate pair scores above a random non-duplicate (Mann-Whitney)."""
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[np.argsort(scores, kind="mergesort")] = np.arange(1, len(scores) + 1)
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# The variants take turns call by call, so load from other processes on a shared machine hits both
# alike and the ratio stays meaningful even when the absolute figures do not.


def time_single(embedders: Embedders, texts: list[str], progress: Progress) -> dict[str, Timings]:
    task = progress.add_task("single texts", total=len(texts))
    out: dict[str, Timings] = {k: [] for k in embedders}
    for emb in embedders.values():
        emb.embed_one(texts[0])  # first run allocates arenas; not part of steady state
    for text in texts:
        for label, emb in embedders.items():
            t0 = time.perf_counter()
            emb.embed_one(text)
            out[label].append(time.perf_counter() - t0)
        progress.advance(task)
    return out


def time_batched(embedders: Embedders, texts: list[str], progress: Progress) -> dict[str, float]:
    task = progress.add_task("batches of 32", total=len(texts))
    spent = dict.fromkeys(embedders, 0.0)
    for start in range(0, len(texts), 32):
        for label, emb in embedders.items():
            t0 = time.perf_counter()
            emb.embed(texts[start : start + 32])
            spent[label] += time.perf_counter() - t0
        progress.advance(task, 32)
    return {label: len(texts) / s for label, s in spent.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.bench_embed", description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--single", type=int, default=300, help="texts embedded one at a time")
    parser.add_argument("--batched", type=int, default=2048, help="texts embedded in batches of 32")
    parser.add_argument("--pairs", type=int, default=2000, help="QQP pairs for the quality check")
    args = parser.parse_args(argv)
    console = Console()
    folder = artifact_path(MODEL, args.models_dir)
    if not (folder / FP32_NAME).is_file():
        console.print(f"[red]{folder / FP32_NAME} missing: the export was made with keep_fp32: false[/]")
        return 1
    need = max(args.single, args.batched, args.pairs)
    a, b, labels = load_pairs(need)
    texts = (a + b)[: max(args.single, args.batched)]
    results: dict[str, dict[str, float]] = {}
    vectors: dict[str, npt.NDArray[np.float32]] = {}
    embedders = {
        label: OnnxEmbedder(folder, threads=args.threads, model_file=file)
        for label, file in (("fp32", FP32_NAME), ("int8", INT8_NAME))
    }
    try:
        with Progress(console=console, transient=True) as progress:
            single = time_single(embedders, texts[: args.single], progress)
            batched = time_batched(embedders, texts[: args.batched], progress)
            task = progress.add_task("quality pairs", total=None)
            for label, emb in embedders.items():
                va, vb = emb.embed(a[: args.pairs]), emb.embed(b[: args.pairs])
                vectors[label] = np.concatenate([va, vb])
                lat = np.asarray(single[label]) * 1000
                results[label] = {
                    "p50": float(np.percentile(lat, 50)),
                    "p99": float(np.percentile(lat, 99)),
                    "single_rate": 1000.0 / float(lat.mean()),
                    "batch_rate": batched[label],
                    "auc": roc_auc((va * vb).sum(axis=1), labels[: args.pairs]),
                }
            progress.remove_task(task)
    finally:
        for emb in embedders.values():
            emb.close()
    agree = (vectors["fp32"] * vectors["int8"]).sum(axis=1)

    table = Table(title=f"{MODEL}, {args.threads} threads (onnxruntime, CPU)")
    for col in ("variant", "single p50 ms", "single p99 ms", "single texts/s", "batch-32 texts/s", "QQP AUC"):
        table.add_column(col, justify="right")
    for label, r in results.items():
        table.add_row(
            label,
            f"{r['p50']:.2f}",
            f"{r['p99']:.2f}",
            f"{r['single_rate']:.0f}",
            f"{r['batch_rate']:.0f}",
            f"{r['auc']:.4f}",
        )
    i8, f32 = results["int8"], results["fp32"]
    table.add_row(
        "int8/fp32",
        f"{i8['p50'] / f32['p50']:.2f}x",
        f"{i8['p99'] / f32['p99']:.2f}x",
        f"{i8['single_rate'] / f32['single_rate']:.2f}x",
        f"{i8['batch_rate'] / f32['batch_rate']:.2f}x",
        f"{i8['auc'] - f32['auc']:+.4f}",
    )
    console.print(table)
    console.print(
        f"cosine(int8, fp32) over {len(agree)} texts: mean {agree.mean():.4f},"
        f" p1 {np.percentile(agree, 1):.4f}, min {agree.min():.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
