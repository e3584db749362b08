"""The sentence embedder the semantic cache uses (the installed ``minilm-l6-v2-onnx`` artifact), and
the memo that lets one request's question be embedded once for every part that reads it.

A request may need its question's vector in three places: the semantic lookup (when its domain is
relaxed), the routing heads (the calibrated policy, before and after the draft), and the semantic
store. ``MemoEmbedder`` keeps the last few hundred vectors by exact text, so whichever part embeds
first pays and the others read the row. Texts are embedded one at a time, never batched: the int8
graph quantises each batch with one scale, so a row would change with its batch neighbours
(measured: cosine as low as 0.978 against the same text alone; padding every batch to one fixed
length does not help, because the scale is per tensor).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from edge_agent.cache.spare import SpareEmbedder
from shared.embedding import Embedder, EmbedderClosed, OnnxEmbedder, Vectors

ARTIFACT = "minilm-l6-v2-onnx"

log = logging.getLogger(__name__)


@runtime_checkable
class SupportsClose(Protocol):
    def close(self) -> None: ...


def load_embedder(models_dir: Path, threads: int = 2) -> Embedder:
    """Raises ``FileNotFoundError`` naming the install command when the artifact is missing."""
    return OnnxEmbedder(models_dir / ARTIFACT, threads=threads)


class MemoEmbedder:
    """An ``Embedder`` that remembers the vectors of the last ``size`` texts; thread-safe.

    ``background``, when given, is a second session of the same model used by ``embed_spare``
    (in the agent, a child process at the lowest CPU priority): work done there never queues
    behind, or in front of, a request's own embedding. The two give identical rows (ONNX Runtime's
    thread count does not change the arithmetic of this graph).
    """

    def __init__(self, inner: Embedder, *, size: int = 512, background: Embedder | None = None) -> None:
        self.inner = inner
        self.background = background or inner
        self.size = size
        self._rows: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = threading.Lock()
        self.embedded = 0  # texts run through a model
        self.reused = 0  # texts answered from the memo

    @property
    def dim(self) -> int:
        return self.inner.dim

    def cached(self, text: str) -> Vectors | None:
        with self._lock:
            row = self._rows.get(text)
            if row is not None:
                self._rows.move_to_end(text)
                self.reused += 1
            return row

    def remember(self, text: str, row: Vectors) -> None:
        with self._lock:
            self._rows[text] = row
            self._rows.move_to_end(text)
            while len(self._rows) > self.size:
                self._rows.popitem(last=False)

    def embed(self, texts: Sequence[str]) -> Vectors:
        return self._embed(texts, self.inner)

    def embed_spare(self, texts: Sequence[str]) -> Vectors:
        """``embed`` on the background session: for work nobody is waiting on."""
        return self._embed(texts, self.background)

    def embed_spare_each(self, texts: Sequence[str]) -> list[Vectors | None]:
        """Each text's row from the memo or the background session, ``None`` for a text it could
        not embed (the others still get theirs). A process of its own takes the texts not in the
        memo in one call; it embeds them one at a time itself."""
        rows: list[Vectors | None] = [self.cached(text) for text in texts]
        todo = [i for i, row in enumerate(rows) if row is None]
        if not todo:
            return rows
        fresh = embed_each(self.background, [texts[i] for i in todo])
        for i, row in zip(todo, fresh, strict=True):
            if row is not None:
                self.embedded += 1
                self.remember(texts[i], row)
                rows[i] = row
        return rows

    def close_background(self) -> None:
        """Stop the background session when it is a process of its own (``spare.SpareEmbedder``)."""
        if self.background is not self.inner and isinstance(self.background, SupportsClose):
            self.background.close()

    def _embed(self, texts: Sequence[str], model: Embedder) -> Vectors:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            row = self.cached(text)
            if row is None:
                row = model.embed([text])[0]
                self.embedded += 1
                self.remember(text, row)
            out[i] = row
        return out


def embed_each(model: Embedder, texts: Sequence[str]) -> list[Vectors | None]:
    """Each text embedded alone (``None`` for one the model cannot take; the others still get
    theirs): a process of its own (``SpareEmbedder``) takes them all in one round trip."""
    if isinstance(model, SpareEmbedder):
        return model.embed_each(texts)
    out: list[Vectors | None] = []
    for text in texts:
        try:
            out.append(model.embed([text])[0])
        except EmbedderClosed:
            raise
        except Exception:
            log.exception("could not embed a question for the semantic index")
            out.append(None)
    return out
