"""Paraphrase pairs for fitting and measuring semantic-cache verifiers (QQP, MRPC, any JSONL).

The edge fits its verifier and measures it on these, and the hub's demo replays paraphrases from
them, so the split is defined once: QQP is cut by a hash of ``pair_id`` into eval (1 in 5) and
train (the rest). No verifier is ever fitted on the pairs it is measured or demonstrated on.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shared import paths

QQP_FILE = Path("paraphrase") / "qqp" / "qqp_pairs_dev.jsonl.gz"
QqpPart = Literal["train", "eval"]


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    label: int


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    false_hit_rate: float = 0.0
    recall: float = 0.0
    served: int = 0


def operating_point(
    scores: Sequence[float], labels: Sequence[int], max_false_rate: float, min_served: int = 20
) -> OperatingPoint:
    """The lowest threshold whose accepted pairs keep wrong hits at or under ``max_false_rate``.

    Fewer than ``min_served`` accepted pairs say too little: then the threshold is 1.0 (serve
    nothing) rather than a guess.
    """
    ranked = sorted(zip(scores, labels, strict=True), key=lambda t: -t[0])
    positives = max(sum(labels), 1)
    best = OperatingPoint(1.0)
    wrong = 0
    for n, (score, label) in enumerate(ranked, start=1):
        wrong += 1 - label
        if n >= min_served and wrong / n <= max_false_rate:
            best = OperatingPoint(float(score), round(wrong / n, 4), round((n - wrong) / positives, 4), n)
    return best


def read_jsonl(path: Path) -> list[dict[str, object]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_pairs(path: Path) -> list[Pair]:
    """A JSONL(.gz) of ``{"text_a", "text_b", "label"}`` objects."""
    return [Pair(str(r["text_a"]), str(r["text_b"]), int(str(r["label"]))) for r in read_jsonl(path)]


def qqp_part(pair_id: object) -> QqpPart:
    return "eval" if hashlib.sha256(str(pair_id).encode()).digest()[0] % 5 == 0 else "train"


def qqp_split(part: QqpPart, data: Path | None = None) -> list[Pair]:
    rows = read_jsonl((data or paths.data_dir()) / QQP_FILE)
    return [
        Pair(str(r["text_a"]), str(r["text_b"]), int(str(r["label"])))
        for r in rows
        if qqp_part(r["pair_id"]) == part
    ]


def mrpc(part: Literal["train", "val"], data: Path | None = None) -> list[Pair]:
    path = (data or paths.data_dir()) / "paraphrase" / "mrpc" / f"msr-para-{part}.tsv"
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [Pair(r[3], r[4], int(r[0])) for r in rows[1:] if len(r) >= 5]
