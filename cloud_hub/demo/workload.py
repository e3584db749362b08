"""A representative edge workload assembled from the public data directory.

Real traffic is a mix: many short questions (some repeated verbatim, some paraphrased), grade-school
maths, multiple-choice knowledge, code, and open-ended writing. Items are picked by a stable hash so
the same data directory always yields the same workload, and items with a known right answer carry it
so the report can measure quality, not just cost.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shared.paraphrase import QQP_FILE, qqp_part


@dataclass(frozen=True)
class WorkItem:
    kind: str  # "chat", "math", "mcq", "code", "writing"
    prompt: str
    reference: str | None = None  # GSM8K number or MMLU letter, when one exists
    repeat_of: int | None = None  # index of an earlier item this one repeats or paraphrases


def _stable_rank(text: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{text}".encode()).hexdigest()


def _pick(rows: list[dict[str, str]], key: str, n: int, salt: str) -> list[dict[str, str]]:
    return sorted(rows, key=lambda r: _stable_rank(r[key], salt))[:n]


def _jsonl(path: Path) -> Iterator[dict[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _gsm8k(data: Path, n: int) -> list[WorkItem]:
    rows = list(_jsonl(data / "text_eval" / "gsm8k" / "test.jsonl"))
    out = []
    for r in _pick(rows, "question", n, "gsm8k"):
        answer = r["answer"].rsplit("####", 1)[-1].strip().replace(",", "")
        prompt = r["question"] + "\nThink step by step, then give the final number after '####'."
        out.append(WorkItem("math", prompt, reference=answer))
    return out


def _mmlu(data: Path, n: int) -> list[WorkItem]:
    rows: list[dict[str, str]] = []
    for path in sorted((data / "text_eval" / "mmlu" / "test").glob("*.csv")):
        with path.open(encoding="utf-8") as fh:
            rows.extend(csv.DictReader(fh))
    out = []
    for r in _pick(rows, "question", n, "mmlu"):
        letters = "ABCD"
        options = "\n".join(f"{letters[i]}. {r[f'choice{i}']}" for i in range(4))
        prompt = f"{r['question']}\n{options}\nAnswer with the letter of the correct option only."
        out.append(WorkItem("mcq", prompt, reference=letters[int(r["answer"])]))
    return out


def _questions(data: Path, n: int, n_pairs: int) -> tuple[list[WorkItem], list[tuple[str, str]]]:
    """Short user questions, plus true paraphrase pairs to replay later as near-repeats.

    Only the held-out eval split: the cache verifier was fitted on the rest.
    """
    rows = [r for r in _jsonl(data / QQP_FILE) if qqp_part(r["pair_id"]) == "eval"]
    ranked = sorted(rows, key=lambda r: _stable_rank(str(r["pair_id"]), "qqp"))
    singles = [WorkItem("chat", r["text_a"]) for r in ranked[:n]]
    pairs = [(r["text_a"], r["text_b"]) for r in ranked[n:] if str(r["label"]) == "1"][:n_pairs]
    return singles, pairs


def _writing(data: Path, n: int) -> list[WorkItem]:
    rows = list(_jsonl(data / "text_eval" / "mt_bench" / "question.jsonl"))
    picked = sorted(rows, key=lambda r: _stable_rank(str(r["question_id"]), "mtb"))[:n]
    return [WorkItem("writing", str(r["turns"][0])) for r in picked]


def _code(data: Path, n: int) -> list[WorkItem]:
    rows = list(_jsonl(data / "text_eval" / "humaneval" / "HumanEval.jsonl.gz"))
    picked = _pick(rows, "task_id", n, "humaneval")
    return [WorkItem("code", "Complete this Python function:\n" + r["prompt"]) for r in picked]


def build_workload(data: Path, size: int = 40) -> list[WorkItem]:
    """30% short questions, 12% maths, 12% multiple choice, 8% code, 8% writing, 10% verbatim repeats,
    and 10% paraphrase pairs (20% of items)."""

    def share(pct: int) -> int:
        return max(1, size * pct // 100)

    singles, pairs = _questions(data, share(30), share(10))
    fresh = singles + _gsm8k(data, share(12)) + _mmlu(data, share(12))
    fresh += _code(data, share(8)) + _writing(data, share(8))
    fresh.sort(key=lambda w: _stable_rank(w.prompt, "order"))
    items = list(fresh)
    # Repeats arrive later in the stream, as they do in real traffic: verbatim first, then paraphrases.
    for i, item in enumerate(list(items[: share(10)])):
        items.append(WorkItem(item.kind, item.prompt, item.reference, repeat_of=i))
    for a, b in pairs:
        items.append(WorkItem("chat", a))
        items.append(WorkItem("chat", b, repeat_of=len(items) - 1))
    return items
