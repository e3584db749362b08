"""Checkable items from recorded-outcomes files, split once by a hash of the prompt.

An item is a prompt exactly as the recorded models saw it, its ground truth (gold letter, number or
test code) where one exists, and the recorded 0-1 outcome of every model the file scored. The same
prompt text is what the hub's replay backend looks up, so a replayed tier answers exactly these
items. ``split`` is a fixed hash split: calibration (``cloud-hub calibrate``) only ever sees
``train`` items and the benchmark only ever reports on ``eval`` items.

Gold answers: GSM8K numbers come from the GSM8K test file, MMLU letters from the joined
``routellm_mmlu_with_gold.csv``, MBPP tests from ``mbpp.jsonl`` (matched on the task text).
RouterBench's ARC-Challenge and Winogrande rows carry no gold letter, only each model's 0/1 score,
so the gold letter is the one the models recorded as correct chose; a row no model got right has no
known gold and is left out (counted in ``LoadReport.dropped``).
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shared.routing.datasets import OutcomeTable, load_outcomes

# sources the default workload draws from, relative to the data directory
ROUTERBENCH = "routing/routerbench"
GSM8K_RESPONSES = "routing/routellm/routellm/evals/gsm8k/gsm8k_responses.csv"
MMLU_GOLD = "routing/routellm/routellm_mmlu_with_gold.csv"
MT_BENCH = "routing/routellm/routellm/evals/mt_bench"
DEFAULT_SOURCES: tuple[str, ...] = (
    f"{ROUTERBENCH}/arc_challenge_train.csv",
    f"{ROUTERBENCH}/winograde_train.csv",
    f"{ROUTERBENCH}/mbpp_train.csv",
    GSM8K_RESPONSES,
    MMLU_GOLD,
    MT_BENCH,
)
TRAIN_SHARE = 0.5  # the calibration half; the rest is what the benchmark reports on
_SPLIT_SALT = "edgeroute-northstar-split"


def unwrap(text: str) -> str:
    """RouterBench stores prompts and answers as a Python list repr (``"['C']"``): take the string."""
    stripped = text.strip()
    if stripped[:2] in ("['", '["') and stripped.endswith("]"):
        try:
            value = ast.literal_eval(stripped)
        except (ValueError, SyntaxError):
            return text
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return "\n".join(value)
    return text


def split_of(prompt: str) -> str:
    digest = hashlib.sha256(f"{_SPLIT_SALT}:{prompt.strip()}".encode()).digest()
    unit = int.from_bytes(digest[:8], "big") / 2**64
    return "train" if unit < TRAIN_SHARE else "eval"


@dataclass(frozen=True)
class Item:
    item_id: str
    source: str  # the file's dataset name: arc-challenge, winogrande, mbpp, gsm8k, mmlu, mt_bench, ...
    kind: str  # "mcq", "math", "code" or "chat" (chat is ungraded here)
    prompt: str
    reference: str | None  # gold letter, final number or test code; None = no ground truth
    split: str
    recorded: dict[str, float] = field(default_factory=dict)  # model -> recorded 0-1 score

    @property
    def graded(self) -> bool:
        return self.reference is not None

    @property
    def probe_kind(self) -> str | None:
        """Which of the hub evaluation's reference checks grades this item (None: ungraded)."""
        return _PROBE_KINDS.get(self.kind) if self.graded else None


# item kind -> the reference check of ``cloud_hub.evaluation.scorers`` that grades it
_PROBE_KINDS = {"mcq": "mcq", "math": "gsm8k", "code": "code"}


@dataclass
class LoadReport:
    loaded: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)  # rows with no known gold answer
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256, for reproducibility


def item_id(source: str, prompt: str) -> str:
    return f"{source}:{hashlib.sha256(prompt.strip().encode()).hexdigest()[:12]}"


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


def _jsonl(path: Path) -> Iterable[dict[str, object]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _norm(text: str) -> str:
    return " ".join(text.split())


class _Gold:
    """Ground truth from the data directory's task files, looked up by prompt text."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self._gsm: dict[str, str] | None = None
        self._mbpp: dict[str, str] | None = None

    def gsm8k(self, prompt: str) -> str | None:
        if self._gsm is None:
            rows = _jsonl(self.data / "text_eval/gsm8k/test.jsonl")
            self._gsm = {
                _norm(str(r["question"])): str(r["answer"]).rsplit("####", 1)[-1].strip().replace(",", "")
                for r in rows
            }
        return self._gsm.get(_norm(prompt))

    def mbpp(self, prompt: str) -> str | None:
        if self._mbpp is None:
            self._mbpp = {}
            for r in _jsonl(self.data / "text_eval/mbpp/mbpp.jsonl"):
                tests = r.get("test_list")
                if isinstance(tests, list):
                    setup = str(r.get("test_setup_code") or "")
                    self._mbpp[_norm(str(r["text"]))] = "\n".join([setup, *map(str, tests)]).strip()
        return self._mbpp.get(_norm(prompt))


def _kind(source: str) -> str:
    s = source.lower()
    if "gsm" in s or "math" in s:
        return "math"
    if "mbpp" in s or "humaneval" in s or "code" in s:
        return "code"
    if "mt_bench" in s or "chat" in s:
        return "chat"
    return "mcq"


def _consensus_letter(table: OutcomeTable, row: int) -> str | None:
    """The letter the models recorded as correct answered (RouterBench rows have no gold column)."""
    from cloud_hub.evaluation.scorers import extract_letter

    votes: Counter[str] = Counter()
    for model, answers in table.responses.items():
        score = table.scores[row, table.models.index(model)]
        if math.isfinite(score) and score >= 0.5:
            letter = extract_letter(unwrap(answers[row]))
            if letter:
                votes[letter] += 1
    return votes.most_common(1)[0][0] if votes else None


def _mmlu_gold(path: Path) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8") as fh:
        return {
            _norm(r["prompt"]): r["gold_letter"].strip() for r in csv.DictReader(fh) if r.get("gold_letter")
        }


def _csv_header(path: Path) -> list[str]:
    if path.suffix != ".csv":
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh), [])


def _source_name(table: OutcomeTable, row: int, routerbench: bool, mmlu: bool) -> str:
    """RouterBench names its dataset per row (``eval_name``); other layouts by file or folder."""
    if mmlu:
        return "mmlu"
    if routerbench and table.groups and table.groups[row]:
        return table.groups[row]
    return table.name.removesuffix("_responses")


def load_items(data: Path, sources: Sequence[Path | str] = DEFAULT_SOURCES) -> tuple[list[Item], LoadReport]:
    """Every row of every source as an ``Item`` (both splits); relative paths resolve against ``data``."""
    gold = _Gold(data)
    report = LoadReport()
    items: list[Item] = []
    seen: set[str] = set()
    for src in sources:
        path = Path(src) if Path(src).is_absolute() else data / src
        table = load_outcomes(path)
        report.files[str(src)] = file_digest(path)
        header = _csv_header(path)
        mmlu = _mmlu_gold(path) if "gold_letter" in header else {}
        routerbench = any(h.endswith("|total_cost") for h in header)
        for row, raw in enumerate(table.prompts):
            prompt = unwrap(raw).strip()
            source = _source_name(table, row, routerbench, bool(mmlu))
            kind = _kind(source)
            reference: str | None
            if mmlu:
                reference = mmlu.get(_norm(raw))
            elif kind == "math":
                reference = gold.gsm8k(prompt)
            elif kind == "code":
                reference = gold.mbpp(prompt)
            elif kind == "mcq":
                reference = _consensus_letter(table, row)
            else:
                reference = None
            if kind != "chat" and reference is None:
                report.dropped[source] += 1
                continue
            if prompt in seen:  # the same prompt in two files: the first file's row wins
                continue
            seen.add(prompt)
            recorded = {
                m: float(table.scores[row, j])
                for j, m in enumerate(table.models)
                if math.isfinite(table.scores[row, j])
            }
            items.append(
                Item(item_id(source, prompt), source, kind, prompt, reference, split_of(prompt), recorded)
            )
            report.loaded[source] += 1
    return items, report
