"""Prompt streams for ``cloud-hub bench images``: real logs and prompt sets from the data folder.

- Krea open prompts (``image_prompts/krea_open_prompts/1k.csv``): a Stable Diffusion Discord log.
  Each row's ``raw_data`` holds the bot's record: timestamp, seed, steps (``num_step``), CFG scale,
  size and how many pictures the command asked for (``num_generations``, the ``-n`` flag: 9 for a
  3×3 grid). Rows that lack those fields carry them in the command text (``-n 9 -S 3247097371``)
  or in the image file name (``_ts-1659921277_``); what is in neither gets the bot's defaults.
  The stream is replayed in timestamp order.
- PartiPrompts (``image_prompts/parti/PartiPrompts.tsv``): 1,632 prompts in 12 categories, in file
  order, one picture each.
- ``--prompts PATH``: any CSV, TSV or JSONL with a ``prompt`` or ``Prompt`` column; optional
  columns ``n``, ``steps``, ``seed``, ``width``, ``height``.
"""

from __future__ import annotations

import csv
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KREA = Path("image_prompts/krea_open_prompts/1k.csv")
PARTI = Path("image_prompts/parti/PartiPrompts.tsv")
# the bot's defaults, for commands that did not say
BOT_STEPS, BOT_CFG, BOT_SIDE = 50, 7.0, 512


@dataclass(frozen=True, slots=True)
class PromptEvent:
    prompt: str
    n: int
    steps: int
    seed: int
    width: int
    height: int
    guidance: float
    at: float  # seconds since the stream's first event


def _flag(text: str, flag: str) -> int | None:
    m = re.search(rf"(?:^|\s){re.escape(flag)}\s+(\d+)", text)
    return int(m.group(1)) if m else None


def _krea_event(prompt: str, raw: dict[str, Any]) -> tuple[float, PromptEvent] | None:
    d = raw.get("raw_discord_data") or {}
    content = str(d.get("content") or "")
    uri = str(d.get("image_uri") or "")
    ts = d.get("timestamp")
    if ts is None:
        m = re.search(r"_ts-(\d+)_", uri)
        ts = int(m.group(1)) if m else None
    if ts is None or not prompt.strip():
        return None
    seed = d.get("seed") if d.get("seed") is not None else _flag(content, "-S")
    n = d.get("num_generations") or _flag(content, "-n") or 1
    steps = d.get("num_step") or _flag(content, "-s") or BOT_STEPS
    event = PromptEvent(
        prompt=prompt.strip(),
        n=int(n),
        steps=int(steps),
        seed=int(seed) % (2**31) if seed is not None else zlib.crc32(prompt.encode()),
        width=int(d.get("width") or BOT_SIDE),
        height=int(d.get("height") or BOT_SIDE),
        guidance=float(d.get("cfg_scale") or BOT_CFG),
        at=0.0,
    )
    return float(ts), event


def krea_stream(path: Path) -> list[PromptEvent]:
    rows: list[tuple[float, PromptEvent]] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            parsed = _krea_event(row["prompt"], json.loads(row["raw_data"]))
            if parsed is not None:
                rows.append(parsed)
    rows.sort(key=lambda r: r[0])
    t0 = rows[0][0] if rows else 0.0
    return [_at(e, ts - t0) for ts, e in rows]


def _at(e: PromptEvent, at: float) -> PromptEvent:
    return PromptEvent(e.prompt, e.n, e.steps, e.seed, e.width, e.height, e.guidance, at)


def _rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix.lower() == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter=delimiter))


def file_stream(path: Path, *, default_steps: int = BOT_STEPS) -> list[PromptEvent]:
    """Any prompt file; the seed of a row without one is fixed by its text and position."""
    rows = _rows(path)
    if rows and not ({"prompt", "Prompt"} & rows[0].keys()):
        raise ValueError(f"{path}: no 'prompt' or 'Prompt' column")
    out = []
    for i, row in enumerate(rows):
        prompt = str(row.get("prompt", row.get("Prompt", "")) or "").strip()
        if not prompt:
            continue
        seed = row.get("seed")
        out.append(
            PromptEvent(
                prompt=prompt,
                n=int(row.get("n") or 1),
                steps=int(row.get("steps") or default_steps),
                seed=int(seed) if seed not in (None, "") else zlib.crc32(f"{i}:{prompt}".encode()),
                width=int(row.get("width") or BOT_SIDE),
                height=int(row.get("height") or BOT_SIDE),
                guidance=float(row.get("guidance") or BOT_CFG),
                at=float(i),
            )
        )
    return out


def scaled(e: PromptEvent, *, side_scale: float, steps_scale: float, max_n: int) -> PromptEvent:
    """Shrink a logged request to the benchmark model: sides by ``side_scale`` (multiples of 16),
    steps by ``steps_scale`` (at least 4), at most ``max_n`` pictures."""

    def side(x: int) -> int:
        return max(16, round(x * side_scale / 16) * 16)

    return PromptEvent(
        e.prompt,
        min(e.n, max_n),
        max(4, round(e.steps * steps_scale)),
        e.seed,
        side(e.width),
        side(e.height),
        e.guidance,
        e.at,
    )


def calibration_prompts(data: Path, k: int) -> list[str]:
    """``k`` PartiPrompts picked by a hash of their text: fixed, and spread over the categories."""
    prompts = [e.prompt for e in file_stream(data / PARTI)]
    return sorted(prompts, key=lambda p: zlib.crc32(p.encode()))[:k]
