from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_agent.cache.db import Database
from edge_agent.cache.keys import CacheRequest, semantic_scope
from edge_agent.cache.mirror import BitMirror, quantize
from edge_agent.cache.semantic import SemanticCache
from edge_agent.cache.verifier import Verifier
from shared.cache_text import system_hash
from shared.embedding import Embedder
from shared.wire import ChatMessage, SamplingParams

QUESTIONS = [
    "How do I reverse a list in Python?",
    "What is the boiling point of water at sea level?",
    "Who painted the Mona Lisa?",
    "How does TCP congestion control work?",
    "What is a monad in functional programming?",
]


def _req(question: str, tenant: str = "acme") -> CacheRequest:
    msgs = (ChatMessage(role="user", content=question),)
    return CacheRequest(tenant=tenant, model="m", messages=msgs, params=SamplingParams(temperature=0.0))


def _scope(tenant: str = "acme") -> str:
    return semantic_scope(_req("x", tenant).tenant_scope, "m", system_hash([]))


def test_quantize_matches_sqlite_vec(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((50, 384)).astype(np.float32)
    with Database(tmp_path / "c.db") as db:
        got = [db.conn.execute("SELECT vec_quantize_binary(?)", (v.tobytes(),)).fetchone()[0] for v in vecs]
    assert got == [row.tobytes() for row in quantize(vecs)]


def test_nearest_by_hamming_distance_per_partition() -> None:
    rng = np.random.default_rng(2)
    vecs = rng.standard_normal((500, 128)).astype(np.float32)
    mirror = BitMirror(128)
    for i, v in enumerate(vecs):
        mirror.add(i, "a" if i % 2 else "b", v)
    q = vecs[7] + rng.standard_normal(128).astype(np.float32) * 0.1
    got = mirror.search(["a"], q, 5)
    bits = np.unpackbits(quantize(vecs), axis=1)
    dist = (bits != np.unpackbits(quantize(q))).sum(axis=1)
    odd = [i for i in range(500) if i % 2]
    fifth = sorted(dist[odd])[4]
    assert 7 in got and all(i % 2 for i in got) and all(dist[i] <= fifth for i in got)
    mirror.remove([7, 7, 12345])  # removing twice or an unknown id is harmless
    assert 7 not in mirror.search(["a"], q, 5) and len(mirror) == 499
    assert mirror.search(["nobody"], q, 5) == []


def test_mirror_follows_commits_and_reloads_from_sqlite(tmp_path: Path, embedder: Embedder) -> None:
    path = tmp_path / "c.db"
    with Database(path) as db:
        cache = SemanticCache(db, embedder, Verifier.load())
        for q in QUESTIONS:
            cache.put(_req(q), f"answer to {q}", "m")
        cache.put(_req(QUESTIONS[0], tenant="globex"), "other tenant", "m")
        assert len(cache.mirror) == cache.count()[1] == 6
        # a write that fails inside its transaction must not reach the mirror
        with pytest.raises(RuntimeError), cache._write() as conn:
            cache._delete_where(conn, "1 = 1", ())
            raise RuntimeError("crash mid-write")
        assert len(cache.mirror) == 6
        hit = cache.get(_req("how do i reverse a list in python")).answer
        assert hit is not None and hit.text == f"answer to {QUESTIONS[0]}"
        live = sorted(cache.mirror.search([_scope()], embedder.embed(["anything"])[0], 100))
    with Database(path) as db:
        reopened = SemanticCache(db, embedder, Verifier.load())
        assert sorted(reopened.mirror.search([_scope()], embedder.embed(["anything"])[0], 100)) == live
        assert len(reopened.mirror) == 6
