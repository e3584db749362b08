"""Loaders for recorded routing outcomes: one prompt per row, one 0–1 score (and cost) per model.

Supported layouts, auto-detected by ``load_outcomes``:

* RouterBench CSV: ``prompt``, one score column per model, ``<model>|total_cost`` (USD), optional
  ``<model>|model_response``. Empty cells are missing outcomes (NaN), never zero.
* RouteLLM CSV (``gsm8k_responses.csv``, ``mmlu_<subject>.csv``): ``prompt`` plus one True/False
  column per model; ``<model>_response`` columns are kept as recorded answers. The derived
  ``routellm_mmlu_with_gold.csv`` (``mixtral_correct`` / ``gpt4_correct``) maps onto model names.
* RouteLLM MMLU folder (``mmlu_*.csv``), RouteLLM MT-Bench folder (``question.jsonl`` +
  ``judgements.jsonl``; score = mean GPT-4 judge score over both turns / 10;
  ``load_single_turn_outcomes`` reads turn 1 alone, with its answer text).
* LLMRouter / RouterDC JSON: a list of ``{"question": ..., "scores": {model: score}}``.

RouteLLM rows carry no cost, so ``ROUTELLM_USD_PER_MTOK`` supplies the blended prices the RouteLLM
paper used; LLMRouter prices come from its ``default_llm.json``.
"""

from __future__ import annotations

import ast
import csv
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

MIXTRAL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
GPT4 = "gpt-4-1106-preview"
# blended USD per million tokens, as in the RouteLLM paper (GPT-4 vs Mixtral-8x7B)
ROUTELLM_USD_PER_MTOK: dict[str, float] = {GPT4: 24.7, MIXTRAL: 0.24}
_GOLD_COLUMNS = {"mixtral_correct": MIXTRAL, "gpt4_correct": GPT4}
_TRUE = {"true", "1", "1.0", "yes"}
_FALSE = {"false", "0", "0.0", "no"}
# the single-turn MT-Bench judge prompt quotes the judged answer between these lines
_MT_ANSWER_START = "[The Start of Assistant's Answer]\n"
_MT_ANSWER_END = "\n[The End of Assistant's Answer]"

csv.field_size_limit(sys.maxsize)


class DatasetFormatError(ValueError):
    """The file does not match any supported outcome layout."""


@dataclass(frozen=True)
class OutcomeTable:
    """Per-prompt, per-model outcomes. ``scores``/``costs`` are (rows, models); NaN = not recorded."""

    name: str
    prompts: list[str]
    models: list[str]
    scores: NDArray[np.float64]
    costs: NDArray[np.float64]
    groups: list[str] = field(default_factory=list)
    # recorded answers per model, where the source kept them (drives cascade replays)
    responses: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n, m = len(self.prompts), len(self.models)
        if self.scores.shape != (n, m) or self.costs.shape != (n, m):
            raise DatasetFormatError(f"{self.name}: scores/costs shape does not match {n} rows x {m} models")
        if self.groups and len(self.groups) != n:
            raise DatasetFormatError(f"{self.name}: {len(self.groups)} groups for {n} rows")
        if any(len(v) != n for v in self.responses.values()):
            raise DatasetFormatError(f"{self.name}: responses do not match {n} rows")

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, index: Sequence[int] | NDArray[np.intp], name: str | None = None) -> OutcomeTable:
        idx = np.asarray(index, dtype=np.intp)
        return replace(
            self,
            name=name or self.name,
            prompts=[self.prompts[i] for i in idx],
            scores=self.scores[idx],
            costs=self.costs[idx],
            groups=[self.groups[i] for i in idx] if self.groups else [],
            responses={m: [r[i] for i in idx] for m, r in self.responses.items()},
        )

    def complete(self, models: Sequence[str] | None = None) -> OutcomeTable:
        """Rows where every named model (default: all) has a score and a cost."""
        cols = [self.models.index(m) for m in (models or self.models)]
        ok = ~np.isnan(self.scores[:, cols]).any(axis=1) & ~np.isnan(self.costs[:, cols]).any(axis=1)
        return self.subset(np.flatnonzero(ok))

    def mean_score(self, model: str) -> float:
        return float(np.nanmean(self.scores[:, self.models.index(model)]))

    def mean_cost(self, model: str) -> float:
        return float(np.nanmean(self.costs[:, self.models.index(model)]))


def _cell_score(raw: str | None) -> float:
    text = (raw or "").strip().lower()
    if not text:
        return math.nan
    if text in _TRUE:
        return 1.0
    if text in _FALSE:
        return 0.0
    try:
        return float(text)
    except ValueError as exc:
        raise DatasetFormatError(f"not a score: {raw!r}") from exc


def _cell_float(raw: str | None) -> float:
    text = (raw or "").strip()
    return float(text) if text else math.nan


def _token_estimate(text: str) -> float:
    # four characters per token is the usual English rule of thumb; only relative cost matters here
    return max(1.0, len(text) / 4.0)


def _priced_costs(
    prompts: Sequence[str], models: Sequence[str], usd_per_mtok: Mapping[str, float]
) -> NDArray[np.float64]:
    """Per-call cost for layouts that record no cost: blended price x (prompt + 256 answer) tokens."""
    tokens = np.array([_token_estimate(p) + 256.0 for p in prompts])
    prices = np.array([usd_per_mtok.get(m, math.nan) for m in models])
    out: NDArray[np.float64] = tokens[:, None] * prices[None, :] / 1e6
    return out


def load_routerbench_csv(path: Path) -> OutcomeTable:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        models = [h.split("|", 1)[0] for h in header if h.endswith("|total_cost")]
        if "prompt" not in header or not models:
            raise DatasetFormatError(f"{path}: not RouterBench (needs prompt and <model>|total_cost)")
        missing = [m for m in models if m not in header]
        if missing:
            raise DatasetFormatError(f"{path}: cost without score column for {missing}")
        prompts, scores, costs, groups = [], [], [], []
        answered = [m for m in models if f"{m}|model_response" in header]
        responses: dict[str, list[str]] = {m: [] for m in answered}
        for row in reader:
            prompts.append(row["prompt"])
            for m in answered:
                responses[m].append(row[f"{m}|model_response"] or "")
            scores.append([_cell_score(row[m]) for m in models])
            costs.append([_cell_float(row[f"{m}|total_cost"]) for m in models])
            groups.append(row.get("eval_name") or "")
    return OutcomeTable(
        name=path.stem,
        prompts=prompts,
        models=models,
        scores=np.array(scores, dtype=np.float64).reshape(len(prompts), len(models)),
        costs=np.array(costs, dtype=np.float64).reshape(len(prompts), len(models)),
        groups=groups if any(groups) else [],
        responses=responses,
    )


def load_routellm_csv(path: Path, group: str = "") -> OutcomeTable:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        if "prompt" not in header:
            raise DatasetFormatError(f"{path}: no prompt column")
        cols = [h for h in header if h not in ("prompt", "subject", "gold_letter", "")]
        cols = [h for h in cols if not h.endswith("_response") and "|" not in h]
        if not cols:
            raise DatasetFormatError(f"{path}: no model columns")
        prompts, scores, groups = [], [], []
        answered = [c for c in cols if f"{c}_response" in header]
        responses: dict[str, list[str]] = {_GOLD_COLUMNS.get(c, c): [] for c in answered}
        for row in reader:
            prompts.append(row["prompt"])
            scores.append([_cell_score(row[c]) for c in cols])
            for c in answered:
                responses[_GOLD_COLUMNS.get(c, c)].append(row[f"{c}_response"] or "")
            groups.append(row.get("subject") or group)
    models = [_GOLD_COLUMNS.get(c, c) for c in cols]
    return OutcomeTable(
        name=path.stem,
        prompts=prompts,
        models=models,
        scores=np.array(scores, dtype=np.float64).reshape(len(prompts), len(models)),
        costs=_priced_costs(prompts, models, ROUTELLM_USD_PER_MTOK),
        groups=groups if any(groups) else [],
        responses=responses,
    )


def load_routellm_mmlu_dir(folder: Path) -> OutcomeTable:
    files = sorted(folder.glob("mmlu_*.csv"))
    if not files:
        raise DatasetFormatError(f"{folder}: no mmlu_*.csv files")
    parts = [load_routellm_csv(f, group=f.stem.removeprefix("mmlu_")) for f in files]
    return concat(parts, name="mmlu")


def load_mt_bench_dir(folder: Path) -> OutcomeTable:
    questions = [json.loads(line) for line in _lines(folder / "question.jsonl")]
    judged: dict[tuple[str, str], list[float]] = {}
    for line in _lines(folder / "judgements.jsonl"):
        j = json.loads(line)
        judged.setdefault((str(j["question_id"]), j["model"]), []).append(float(j["score"]))
    models = sorted({m for _, m in judged})
    prompts, scores, groups = [], [], []
    for q in questions:
        qid = str(q["question_id"])
        prompts.append(q["turns"][0])
        groups.append(q.get("category", ""))
        # the judge scores 1-10 per turn; a routed model answers both turns
        scores.append([np.mean(judged[(qid, m)]) / 10.0 if (qid, m) in judged else math.nan for m in models])
    return OutcomeTable(
        name="mt_bench",
        prompts=prompts,
        models=models,
        scores=np.array(scores, dtype=np.float64).reshape(len(prompts), len(models)),
        costs=_priced_costs(prompts, models, ROUTELLM_USD_PER_MTOK),
        groups=groups,
    )


def load_mt_bench_first_turns(folder: Path) -> OutcomeTable:
    """MT-Bench's first questions as a single-turn table: the turn-1 judge score / 10 and the
    turn-1 answer, which the single-turn judge prompt quotes between fixed markers.

    ``load_mt_bench_dir`` scores a model over both turns; replaying one recorded answer to one
    question needs the score of that answer alone.
    """
    questions = [json.loads(line) for line in _lines(folder / "question.jsonl")]
    judged: dict[tuple[str, str], tuple[float, str]] = {}
    for line in _lines(folder / "judgements.jsonl"):
        j = json.loads(line)
        if int(j.get("turn", 1)) != 1:
            continue
        score = float(j["score"])
        # MT-Bench writes -1 when the judge's rating could not be parsed
        if not 1.0 <= score <= 10.0:
            continue
        prompt = str(j.get("user_prompt", ""))
        start, end = prompt.find(_MT_ANSWER_START), prompt.rfind(_MT_ANSWER_END)
        answer = prompt[start + len(_MT_ANSWER_START) : end] if 0 <= start < end else ""
        judged.setdefault((str(j["question_id"]), j["model"]), (score / 10.0, answer))
    models = sorted({m for _, m in judged})
    prompts, scores, groups = [], [], []
    responses: dict[str, list[str]] = {m: [] for m in models}
    for q in questions:
        qid = str(q["question_id"])
        prompts.append(q["turns"][0])
        groups.append(q.get("category", ""))
        scores.append([judged[(qid, m)][0] if (qid, m) in judged else math.nan for m in models])
        for m in models:
            responses[m].append(judged[(qid, m)][1] if (qid, m) in judged else "")
    return OutcomeTable(
        name="mt_bench_turn1",
        prompts=prompts,
        models=models,
        scores=np.array(scores, dtype=np.float64).reshape(len(prompts), len(models)),
        costs=_priced_costs(prompts, models, ROUTELLM_USD_PER_MTOK),
        groups=groups,
        responses=responses,
    )


def load_single_turn_outcomes(path: Path) -> OutcomeTable:
    """``load_outcomes``, except that an MT-Bench folder yields its first turns only: the table
    for replaying one recorded answer per prompt."""
    if path.is_dir() and (path / "judgements.jsonl").is_file():
        return load_mt_bench_first_turns(path)
    return load_outcomes(path)


def is_routerbench_csv(path: Path) -> bool:
    """Whether ``path`` is in the RouterBench layout, the one that records each call's real cost
    (the other layouts' costs are priced here from token estimates)."""
    return (
        path.is_file() and path.suffix == ".csv" and any(h.endswith("|total_cost") for h in _csv_header(path))
    )


def unwrap_recorded(text: str) -> str | None:
    """One recorded text: RouterBench stores prompts and answers as a Python list repr
    (``"['C']"``), which unwraps to its one string. A list of several strings is a split or
    multi-turn record, not one text: None. Anything else is plain text and comes back as it is."""
    stripped = text.strip()
    if not (stripped.startswith("[") and stripped.endswith("]")):
        return text
    try:
        value = ast.literal_eval(stripped)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return text  # e.g. a prompt that happens to be "[1, 2]"
    return value[0] if len(value) == 1 else None


def load_scores_json(path: Path, prices: Mapping[str, float] | None = None) -> OutcomeTable:
    """LLMRouter / RouterDC layout; ``prices`` (USD/M tokens) default to ``default_llm.json`` beside it."""
    rows = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(rows, list) or not rows or "scores" not in rows[0]:
        raise DatasetFormatError(f"{path}: expected a list of {{question, scores}} objects")
    parsed = [r["scores"] if isinstance(r["scores"], dict) else ast.literal_eval(r["scores"]) for r in rows]
    models = sorted({m for s in parsed for m in s})
    prompts = [str(r.get("question") or r.get("query") or "") for r in rows]
    scores = np.array([[float(s[m]) if s.get(m) is not None else math.nan for m in models] for s in parsed])
    if prices is None:
        prices = llmrouter_prices(path.parent / "default_llm.json")
    costs = (
        _priced_costs(prompts, models, prices)
        if prices
        else np.ones((len(prompts), len(models)), dtype=np.float64)  # unpriced: every call costs 1 unit
    )
    groups = [str(r.get("cluster_id", "")) for r in rows]
    return OutcomeTable(path.stem, prompts, models, scores, costs, groups if any(groups) else [])


def llmrouter_prices(path: Path) -> dict[str, float]:
    if not path.is_file():
        return {}
    spec = json.loads(path.read_text(encoding="utf-8"))
    return {name: (float(v["input_price"]) + float(v["output_price"])) / 2 for name, v in spec.items()}


def load_contaminated(path: Path) -> set[str]:
    """Prompts RouteLLM trained on (``eval_prompt`` field), normalised for matching."""
    return {_norm(json.loads(line)["eval_prompt"]) for line in _lines(path)}


def drop_prompts(table: OutcomeTable, prompts: Iterable[str]) -> OutcomeTable:
    banned = {_norm(p) for p in prompts}
    keep = [i for i, p in enumerate(table.prompts) if _norm(p) not in banned]
    return table.subset(keep)


def concat(parts: Sequence[OutcomeTable], name: str) -> OutcomeTable:
    models = parts[0].models
    if any(p.models != models for p in parts):
        raise DatasetFormatError(f"{name}: parts disagree on models")
    return OutcomeTable(
        name=name,
        prompts=[x for p in parts for x in p.prompts],
        models=list(models),
        scores=np.concatenate([p.scores for p in parts]),
        costs=np.concatenate([p.costs for p in parts]),
        groups=[g for p in parts for g in (p.groups or [""] * len(p))],
        responses={
            m: [r for p in parts for r in p.responses[m]]
            for m in parts[0].responses
            if all(m in p.responses for p in parts)
        },
    )


def load_outcomes(path: Path) -> OutcomeTable:
    """Detect the layout of ``path`` (file or folder) and load it."""
    if path.is_dir():
        if (path / "judgements.jsonl").is_file():
            return load_mt_bench_dir(path)
        if any(path.glob("mmlu_*.csv")):
            return load_routellm_mmlu_dir(path)
        if (path / "responses").is_dir():
            return load_routellm_mmlu_dir(path / "responses")
        raise DatasetFormatError(f"{path}: folder holds no known outcome layout")
    if not path.is_file():
        raise DatasetFormatError(f"{path}: no such file")
    if path.suffix == ".json":
        return load_scores_json(path)
    if path.suffix == ".csv":
        if is_routerbench_csv(path):
            return load_routerbench_csv(path)
        return load_routellm_csv(path)
    raise DatasetFormatError(f"{path}: unsupported file type {path.suffix!r}")


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh), [])


def _lines(path: Path) -> Iterable[str]:
    with path.open(encoding="utf-8") as fh:
        yield from (line for line in fh if line.strip())


def _norm(text: str) -> str:
    return " ".join(text.replace("’", "'").split()).lower()
