"""Live outcomes as a recorded-outcomes file, and the joined table the fit learns from.

The live answers are written in RouterBench's schema (``sample_id``, ``prompt``, ``eval_name``, per
model a score column, ``<model>|model_response`` and ``<model>|total_cost``), with prompts and
answers stored as one-string Python lists the way RouterBench stores them, so
``shared.routing.datasets.load_outcomes`` and the hub's replay backend read the file like any other
source. A missing outcome (the pinned tier did not answer) is an empty cell, never a zero.

``join`` puts those live columns beside the replayed tiers' recorded outcomes: scores from the
items' recorded results, costs from the source files' outcome tables. The replayed tiers were
recorded on every train item, not only on the few the live tiers had time for, so ``extra`` train
items join as rows whose live columns are unknown (NaN): they teach the replayed tiers' heads and
stay out of the threshold calibration, which needs every tier's outcome. Only ``train`` items ever
enter the table; any other row of an outcomes file is counted and left out.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cloud_hub.calibrate.plan import TierModel
from cloud_hub.demo.items import Item, unwrap
from shared.routing.datasets import OutcomeTable, load_outcomes
from shared.taxonomy import Tier

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class Answer:
    """One live tier's answer to one item: its grade (None: ungradable) and what it cost."""

    score: float | None
    text: str
    cost_usd: float


def _cell(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else repr(float(value))


def write_outcomes(path: Path, items: Sequence[Item], answers: Mapping[str, Sequence[Answer | None]]) -> None:
    """One row per item, one score/response/cost column triple per model (``answers`` keys)."""
    models = list(answers)
    for m in models:
        if len(answers[m]) != len(items):
            raise ValueError(f"{m}: {len(answers[m])} answers for {len(items)} items")
    header = ["sample_id", "prompt", "eval_name", *models]
    header += [f"{m}|model_response" for m in models] + [f"{m}|total_cost" for m in models]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(header)
        for i, item in enumerate(items):
            got = [answers[m][i] for m in models]
            scores = [_cell(a.score if a else None) for a in got]
            texts = [repr([a.text]) if a else "" for a in got]
            costs = [_cell(a.cost_usd if a else None) for a in got]
            out.writerow([item.item_id, repr([item.prompt]), item.source, *scores, *texts, *costs])
    tmp.replace(path)


class RecordedCosts:
    """Per-call costs of recorded models, looked up by prompt in the source files' outcome tables
    (the first file holding a prompt wins, as in ``load_items``)."""

    def __init__(self, tables: Sequence[OutcomeTable]) -> None:
        self._at: dict[str, tuple[OutcomeTable, int]] = {}
        for table in tables:
            for row, raw in enumerate(table.prompts):
                self._at.setdefault(unwrap(raw).strip(), (table, row))

    @classmethod
    def load(cls, data: Path, sources: Sequence[Path | str]) -> RecordedCosts:
        paths = [Path(s) if Path(s).is_absolute() else data / s for s in sources]
        return cls([load_outcomes(p) for p in paths])

    def cost(self, prompt: str, names: Sequence[str]) -> float | None:
        found = self._at.get(prompt.strip())
        if found is None:
            return None
        table, row = found
        for name in names:
            if name in table.models:
                value = float(table.costs[row, table.models.index(name)])
                if math.isfinite(value):
                    return value
        return None


@dataclass(frozen=True)
class JoinedTable:
    """Rows = train items; columns = tiers (scores 0-1 and USD costs; NaN = not known)."""

    item_ids: list[str]
    sources: list[str]
    prompts: list[str]
    tiers: tuple[TierModel, ...]
    scores: F64
    costs: F64
    dropped: Counter[str] = field(default_factory=Counter)  # why rows of the outcomes file were left out

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(t.tier.value for t in self.tiers)

    def column(self, tier: Tier) -> int:
        return next(i for i, t in enumerate(self.tiers) if t.tier is tier)

    def complete(self) -> NDArray[np.bool_]:
        """Rows with every tier's score and cost: the ones thresholds are calibrated on."""
        ok = ~(np.isnan(self.scores).any(axis=1) | np.isnan(self.costs).any(axis=1))
        return np.asarray(ok, dtype=np.bool_)


def _live_columns(live: OutcomeTable, tiers: Sequence[TierModel]) -> dict[Tier, int]:
    cols = {}
    for t in tiers:
        if not t.live:
            continue
        if t.model not in live.models:
            have = ", ".join(live.models)
            raise ValueError(
                f"{live.name}: no column for the {t.tier.value} tier's model {t.model!r} (has {have})"
            )
        cols[t.tier] = live.models.index(t.model)
    return cols


def join(
    live: OutcomeTable,
    items: Sequence[Item],
    tiers: Sequence[TierModel],
    recorded: RecordedCosts,
    extra: Sequence[Item] = (),
) -> JoinedTable:
    """The live outcomes file's train rows, then the ``extra`` train items it does not hold, with
    every tier's score and cost (NaN where unknown)."""
    by_prompt = {it.prompt: it for it in items}
    cols = _live_columns(live, tiers)
    dropped: Counter[str] = Counter()
    ids, sources, prompts, scores, costs = [], [], [], [], []
    seen: set[str] = set()

    def add(item: Item, row: int | None) -> None:
        if item.split != "train":
            dropped["eval split (never used for calibration)"] += 1
            return
        if item.item_id in seen:
            dropped["repeated row"] += 1
            return
        seen.add(item.item_id)
        s_row, c_row = [], []
        for t in tiers:
            if t.live:
                s_row.append(math.nan if row is None else float(live.scores[row, cols[t.tier]]))
                c_row.append(math.nan if row is None else float(live.costs[row, cols[t.tier]]))
                continue
            score = t.recorded_score(item)
            cost = recorded.cost(item.prompt, t.recorded_models)
            s_row.append(math.nan if score is None else score)
            c_row.append(math.nan if cost is None else cost)
        ids.append(item.item_id)
        sources.append(item.source)
        prompts.append(item.prompt)
        scores.append(s_row)
        costs.append(c_row)

    for row, raw in enumerate(live.prompts):
        item = by_prompt.get(unwrap(raw).strip())
        if item is None:
            dropped["not an item of the sources"] += 1
            continue
        add(item, row)
    for item in extra:
        if item.item_id not in seen:
            add(item, None)
    n, m = len(prompts), len(tiers)
    return JoinedTable(
        ids,
        sources,
        prompts,
        tuple(tiers),
        np.array(scores, dtype=np.float64).reshape(n, m),
        np.array(costs, dtype=np.float64).reshape(n, m),
        dropped,
    )
