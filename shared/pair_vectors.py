"""Sentence vectors of paraphrase pairs, cached on disk: the verifier's and the judge's fits share them.

Embedding the QQP training split takes minutes on two cores; both the edge's verifier fit and the
hub's judge fit (and their benchmarks) read the same vectors from a file named by a digest of the
texts, so a change of data is a cache miss, never a stale vector.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.progress import Progress

from shared.embedding import Embedder, Vectors
from shared.paraphrase import Pair


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "edgeroute" / "bench"


def embed_texts(embedder: Embedder, texts: list[str], cache_dir: Path | None = None) -> Vectors:
    """Embed with a progress bar; vectors are cached on disk by a digest of the texts."""
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:24]
    cache = (cache_dir or default_cache_dir()) / f"emb-{digest}-{embedder.dim}.npy"
    if cache.is_file():
        loaded: Vectors = np.load(cache, allow_pickle=False)
        return loaded
    out = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    with Progress(transient=True) as progress:
        task = progress.add_task("embedding", total=len(texts))
        for i in range(0, len(texts), 64):
            out[i : i + 64] = embedder.embed(texts[i : i + 64])
            progress.advance(task, min(64, len(texts) - i))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def pair_vectors(
    embedder: Embedder, pairs: Sequence[Pair], cache_dir: Path | None = None
) -> tuple[Vectors, Vectors]:
    """(vectors of every ``a``, vectors of every ``b``), row ``i`` for ``pairs[i]``."""
    texts = sorted({p.a for p in pairs} | {p.b for p in pairs})
    index = {t: i for i, t in enumerate(texts)}
    vecs = embed_texts(embedder, texts, cache_dir)
    ia = np.fromiter((index[p.a] for p in pairs), dtype=np.int64, count=len(pairs))
    ib = np.fromiter((index[p.b] for p in pairs), dtype=np.int64, count=len(pairs))
    return vecs[ia], vecs[ib]


def pair_cosines(embedder: Embedder, pairs: Sequence[Pair], cache_dir: Path | None = None) -> Vectors:
    va, vb = pair_vectors(embedder, pairs, cache_dir)
    cos: Vectors = np.einsum("ij,ij->i", va, vb).astype(np.float32)
    return cos
