"""Sentence embeddings for the routing heads, and a content-addressed on-disk cache of them.

The deployed embedder is ``shared.embedding.OnnxEmbedder`` (MiniLM-L6 int8 ONNX). Benchmarks embed
tens of thousands of recorded prompts, so ``CachedEmbedder`` keeps each vector in an ``.npz`` keyed by
the SHA-256 of (embedder id, text): a rerun costs a file read, and a different model never reuses
another model's vectors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from shared import paths
from shared.embedding import OnnxEmbedder

EMBEDDING_MODEL = "minilm-l6-v2-onnx"
F32 = NDArray[np.float32]
# about the 128 tokens the embedder reads
ROUTING_VIEW_CHARS = 600


def routing_view(prompt: str) -> str:
    """The part of a prompt the success heads read: all of a short one, the end of a long one.

    The embedder reads its first 128 tokens only, and few-shot prompts open with the same worked
    examples, so the openings of every ARC or Winogrande prompt embed to one vector; the question
    being asked comes last, so the end is what tells two long prompts apart.
    """
    text = prompt.strip()
    return text if len(text) <= ROUTING_VIEW_CHARS else text[-ROUTING_VIEW_CHARS:]


class TextEmbedder(Protocol):
    """Anything that turns texts into L2-normalised float32 rows."""

    def embed(self, texts: Sequence[str]) -> F32: ...


class EmbedderUnavailable(FileNotFoundError):
    pass


def load_default_embedder(models_dir: Path | None = None) -> TextEmbedder:
    """The MiniLM ONNX embedder from the models directory, with a clear error when it is missing."""
    folder = (models_dir or paths.models_dir()) / EMBEDDING_MODEL
    if not folder.is_dir():
        raise EmbedderUnavailable(
            f"{folder} is missing: run `edgeroute-models install {EMBEDDING_MODEL}` "
            "(or set EDGEROUTE_MODELS_DIR)"
        )
    return OnnxEmbedder(folder)


def embedder_id(models_dir: Path | None = None) -> str:
    """Names the installed artifact: a re-exported model (new size) never reuses old cached vectors."""
    folder = (models_dir or paths.models_dir()) / EMBEDDING_MODEL
    model = folder / "model.onnx"
    size = model.stat().st_size if model.is_file() else 0
    return f"{EMBEDDING_MODEL}:{size}"


def _norm_rows(x: F32) -> F32:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    out: F32 = (x / np.maximum(n, 1e-12)).astype(np.float32)
    return out


class CachedEmbedder:
    """Wraps an embedder with a persistent cache; ``flush()`` writes new vectors (also on ``close``)."""

    def __init__(self, inner: TextEmbedder, cache_file: Path, model_id: str = EMBEDDING_MODEL) -> None:
        self._inner = inner
        self._file = cache_file
        self._model_id = model_id
        self._cache: dict[str, F32] = {}
        self._dirty = False
        if cache_file.is_file():
            with np.load(cache_file, allow_pickle=False) as z:
                keys, vecs = z["keys"], z["vectors"]
            self._cache = {str(k): vecs[i] for i, k in enumerate(keys)}

    @property
    def model_id(self) -> str:
        return self._model_id

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self._model_id}\0{text}".encode()).hexdigest()[:32]

    def embed(
        self, texts: Sequence[str], batch: int = 64, progress: Callable[[int], None] | None = None
    ) -> F32:
        keys = [self._key(t) for t in texts]
        todo = sorted(
            {k: i for i, k in enumerate(keys) if k not in self._cache}.items(), key=lambda kv: kv[1]
        )
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            vecs = _norm_rows(self._inner.embed([texts[i] for _, i in chunk]))
            for (k, _), v in zip(chunk, vecs, strict=True):
                self._cache[k] = v
            self._dirty = True
            if progress is not None:
                progress(len(chunk))
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._cache[k] for k in keys]).astype(np.float32)

    def missing(self, texts: Sequence[str]) -> int:
        return len({self._key(t) for t in texts} - self._cache.keys())

    def flush(self) -> None:
        if not self._dirty:
            return
        self._file.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(self._cache), dtype=np.str_)
        vecs = np.stack(list(self._cache.values())).astype(np.float32)
        tmp = self._file.with_suffix(".tmp.npz")
        with tmp.open("wb") as fh:
            np.savez(fh, keys=keys, vectors=vecs)
        tmp.replace(self._file)  # atomic: a crash never leaves a half-written cache
        self._dirty = False

    def close(self) -> None:
        self.flush()


def default_cache_file() -> Path:
    return paths.models_dir().parent / "cache" / f"{EMBEDDING_MODEL}-embeddings.npz"
