"""How a freshly fitted router would have done on a finished demo run's held-out items.

``cloud-hub calibrate --replay var/demo/main/records.jsonl`` reads the per-tier baseline answers
that a ``cloud-hub demo`` run recorded and graded, and replays the new heads and threshold table
over them, just as the demo's own target curve does for the shipped ones (``cloud_hub.demo.curve``).
The table is calibrated on train items and the demo asks eval items, so this is the held-out check
of a table: what each target delivers on the workload, not what the calibration rows promised.
Nothing is served again; a record whose item is not among the loaded ones (a Quora question, which
the demo builds from pairs and never grades) is left out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cloud_hub.demo.curve import target_curve
from cloud_hub.demo.items import Item
from cloud_hub.demo.summary import TierInfo
from cloud_hub.demo.traffic import Record
from cloud_hub.demo.workload import Request
from shared.routing.calibration import ThresholdTable
from shared.routing.embed import TextEmbedder
from shared.routing.heads import THRESHOLDS_FILE, ClassifierHeads
from shared.taxonomy import Tier


def load_passes(records: Path, items: Sequence[Item]) -> dict[str, list[Record]]:
    """The records of each pass (``routed`` and one per pinned tier), as the demo held them."""
    by_id = {i.item_id: i for i in items}
    passes: dict[str, list[Record]] = {}
    for n, line in enumerate(records.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            item = by_id.get(str(row["item_id"]))
            if item is None:
                continue
            score = row["score"]
            rec = Record(
                Request(int(row["seq"]), item, str(row["tenant"]), str(row["repeat"])),
                str(row["pass"]),
                route=str(row["route"]),
                model=str(row["model"]),
                cost_usd=float(row["cost_usd"]),
                error=str(row["error"]),
                score=None if score is None else float(score),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{records}:{n}: not a demo record ({exc})") from None
        passes.setdefault(rec.pass_name, []).append(rec)
    return passes


def replay_curve(
    records: Path, items: Sequence[Item], heads_dir: Path, embedder: TextEmbedder
) -> list[dict[str, float]]:
    """The target curve of the heads and table in ``heads_dir`` over a run's recorded outcomes."""
    table = ThresholdTable.load(heads_dir / THRESHOLDS_FILE)
    tiers = [TierInfo(Tier(o), "", "") for o in table.options]
    return target_curve(load_passes(records, items), tiers, ClassifierHeads.load(heads_dir), table, embedder)


def print_curve(console: Console, records: Path, curve: list[dict[str, float]]) -> None:
    if not curve:
        console.print(f"[yellow]{records}: no graded item that every tier answered[/yellow]")
        return
    t = Table(title=f"held out: the new table replayed on {records} ({curve[0]['items']:.0f} graded items)")
    for col in ("target", "quality / frontier", "cost / frontier", "frontier share"):
        t.add_column(col, justify="right")
    for pt in curve:
        t.add_row(
            f"{pt['target']:.2f}",
            f"{pt['quality_ratio']:.3f}",
            f"{pt['cost_ratio']:.3f}",
            f"{pt['frontier_share']:.0%}",
        )
    console.print(t)
