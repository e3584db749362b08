"""Replay backend: a model's recorded real answers, looked up by prompt in recorded-outcome files.

Some tiers cannot run where the hub runs (a large open model on a CPU-only machine, a frontier API
without a key). Public routing benchmarks recorded what those models really answered, how each
answer was graded and, for RouterBench, what the call really cost. Serving those records lets the
whole route hierarchy run end to end with real answers, scores and costs instead of invented ones.

Rules:

* A request is looked up only when it is one user turn, optionally after one system message; the
  key is that turn's text stripped of surrounding whitespace. Anything else, and any prompt the
  files do not hold, raises ``NotRecorded``: never an invented answer. It is not retryable and
  carries no status, so the hub's fallback chain moves on to the next tier.
* Files are read in the order configured and the first record of a prompt wins, across files and
  within one, so put the sources with answer text and real costs first.
* Rows without a score for the model are not records. A row with a score but no answer text
  (RouteLLM's MMLU file kept only correctness) answers with a marker text saying so; the recorded
  score is what grades it.
* The recorded answer is served whole, ignoring ``max_tokens`` and ``stop``: its score grades the
  whole answer, and a cut one would no longer be the answer that was graded.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cloud_hub.backends.base import Completion, HubBackendError, StreamItem
from shared import paths
from shared.config import HubModelEntry
from shared.routing.datasets import is_routerbench_csv, load_single_turn_outcomes, unwrap_recorded
from shared.wire import ChatMessage, SamplingParams, Usage

log = logging.getLogger(__name__)

_STREAM_PIECES = 4
_NO_TEXT = "the source kept no answer text"
# roles that carry instructions ahead of the user turn (OpenAI renamed "system" to "developer")
_SYSTEM_ROLES = frozenset({"system", "developer"})


class NotRecorded(HubBackendError):
    """The recorded files hold no answer of this model to this request."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False, status=None)


@dataclass(frozen=True, slots=True)
class Recorded:
    text: str | None  # None: the source kept the outcome but no answer text
    score: float  # 0-1
    cost_usd: float | None  # None: the source recorded no cost for the call
    model: str  # the source's name for the model
    source: str  # the file or folder it came from


def load_records(models: Sequence[str], sources: Sequence[Path]) -> dict[str, Recorded]:
    """Every recorded answer of the model in ``sources``; in each file the first of ``models``
    present is the model's column. Missing sources are logged and skipped, so a hub whose data
    is not downloaded yet still starts (and every lookup falls through)."""
    records: dict[str, Recorded] = {}
    for path in sources:
        if not path.exists():
            log.warning("replay of %s: %s does not exist; skipped", models[0], path)
            continue
        table = load_single_turn_outcomes(path)
        column = next((m for m in models if m in table.models), None)
        if column is None:
            log.warning("replay of %s: %s has none of the columns %s", models[0], path, list(models))
            continue
        j = table.models.index(column)
        texts = table.responses.get(column)
        # RouterBench alone records real per-call costs, and alone stores its texts as list reprs
        # (elsewhere a text such as '["a", "b"]' is an answer in its own right)
        routerbench = is_routerbench_csv(path)
        for i, raw_prompt in enumerate(table.prompts):
            score = float(table.scores[i, j])
            prompt = _text(raw_prompt, routerbench)
            if math.isnan(score) or prompt is None or not prompt.strip():
                continue
            key = prompt.strip()
            if key in records:
                continue
            text = _text(texts[i], routerbench) if texts is not None else None
            cost = float(table.costs[i, j]) if routerbench else math.nan
            records[key] = Recorded(
                text=text or None,  # an empty recorded answer holds no text to serve
                score=score,
                cost_usd=cost if math.isfinite(cost) else None,
                model=column,
                source=path.name,
            )
    return records


def _text(raw: str, wrapped: bool) -> str | None:
    return unwrap_recorded(raw) if wrapped else raw


def _tokens(text: str) -> int:
    # No tokenizer of the recorded model is at hand: about four characters per token in English,
    # so usage (and any price computed from it) is an estimate; a recorded cost is exact.
    return max(1, round(len(text) / 4))


def _pieces(text: str, n: int) -> list[str]:
    """``text`` in about ``n`` pieces, each cut just after a space so no word is split."""
    size = max(1, math.ceil(len(text) / n))
    out: list[str] = []
    start = 0
    while start < len(text):
        cut = text.find(" ", start + size)
        end = len(text) if cut < 0 else cut + 1
        out.append(text[start:end])
        start = end
    return out


class ReplayBackend:
    def __init__(self, label: str, records: dict[str, Recorded]) -> None:
        self.label = label
        self._records = records
        self._closed = False

    @classmethod
    async def from_config(cls, entry: HubModelEntry, models_dir: Path) -> ReplayBackend:
        if not entry.recorded:
            raise ValueError(f"model {entry.name!r}: the replay backend needs recorded (outcome files)")
        root = paths.data_dir()
        sources = [p if p.is_absolute() else root / p for p in entry.recorded]
        names = entry.recorded_models or [entry.served_model or entry.name]
        return await asyncio.to_thread(cls.load, names, sources)

    @classmethod
    def load(cls, models: Sequence[str], sources: Sequence[Path]) -> ReplayBackend:
        """Read the files (blocking: the hub runs this off its event loop)."""
        if not models:
            raise ValueError("a replay backend needs at least one model name to look up")
        started = time.perf_counter()
        records = load_records(models, sources)
        log.info(
            "replay of %s: %d recorded prompts from %d source(s) in %.2f s",
            models[0],
            len(records),
            len(sources),
            time.perf_counter() - started,
        )
        return cls(models[0], records)

    @property
    def size(self) -> int:
        """How many prompts have a recorded answer."""
        return len(self._records)

    def lookup(self, messages: Sequence[ChatMessage]) -> tuple[str, Recorded]:
        """The prompt key and its record, or ``NotRecorded``."""
        if self._closed:
            raise HubBackendError(f"replay of {self.label} is closed", retryable=False)
        turns = list(messages)
        if turns and turns[0].role in _SYSTEM_ROLES:
            turns = turns[1:]
        if len(turns) != 1 or turns[0].role != "user":
            raise NotRecorded(f"{self.label} was recorded on single user turns only; this request has others")
        prompt = turns[0].content.strip()
        record = self._records.get(prompt)
        if record is None:
            raise NotRecorded(f"no recorded answer of {self.label} to this prompt")
        return prompt, record

    def _complete(self, messages: Sequence[ChatMessage]) -> Completion:
        prompt, rec = self.lookup(messages)
        if rec.text is None:
            verdict = "correct" if rec.score >= 0.5 else "incorrect"
            text = f"[replay: {rec.model} was recorded {verdict} on this prompt; {_NO_TEXT}]"
            # the answer's length is unknown; the one such source (MMLU) is graded on one letter
            completion_tokens = 1
        else:
            text = rec.text
            completion_tokens = _tokens(text)
        return Completion(
            text=text,
            finish_reason="stop",
            usage=Usage(prompt_tokens=_tokens(prompt), completion_tokens=completion_tokens),
            cost_usd=rec.cost_usd,
            recorded_score=rec.score,
            recorded_model=rec.model,
        )

    async def generate(self, messages: Sequence[ChatMessage], params: SamplingParams) -> Completion:
        return self._complete(messages)

    async def stream(
        self, messages: Sequence[ChatMessage], params: SamplingParams
    ) -> AsyncIterator[StreamItem]:
        # looked up before the first piece, so an unrecorded prompt can still fall through
        result = self._complete(messages)
        for piece in _pieces(result.text, _STREAM_PIECES):
            yield piece
        yield result

    async def close(self) -> None:
        self._closed = True
        self._records = {}
