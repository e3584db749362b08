"""Paraphrase pairs for fitting and measuring semantic-cache verifiers (QQP, MRPC, any JSONL).

Both the model builder (``models``: the cross-encoder is trained at install time) and the edge's
cache benchmark read these, so the splits are defined once: QQP is cut by a hash of ``pair_id`` into
eval (1 in 5), calib (1 in 10 of the rest: thresholds are chosen here) and fit (everything else).
No verifier is ever fitted or calibrated on the pairs it is measured on.
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
QqpPart = Literal["train", "fit", "calib", "eval"]


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
    digest = hashlib.sha256(str(pair_id).encode()).digest()
    if digest[0] % 5 == 0:
        return "eval"
    return "calib" if digest[1] % 10 == 0 else "fit"


def qqp_split(part: QqpPart, data: Path | None = None) -> list[Pair]:
    """``train`` is ``fit`` and ``calib`` together: everything but the held-out eval pairs."""
    rows = read_jsonl((data or paths.data_dir()) / QQP_FILE)
    out = []
    for r in rows:
        got = qqp_part(r["pair_id"])
        if got == part or (part == "train" and got != "eval"):
            out.append(Pair(str(r["text_a"]), str(r["text_b"]), int(str(r["label"]))))
    return out


def mrpc_file(part: str) -> Path:
    return Path("paraphrase") / "mrpc" / f"msr-para-{part}.tsv"


def mrpc(part: Literal["train", "val"], data: Path | None = None) -> list[Pair]:
    path = (data or paths.data_dir()) / mrpc_file(part)
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [Pair(r[3], r[4], int(r[0])) for r in rows[1:] if len(r) >= 5]
