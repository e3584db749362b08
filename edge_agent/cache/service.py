"""The edge's cache stage: exact first, then verified semantic, each leaving a trace step.

The pipeline builds a ``CacheRequest`` with the tenant from the authenticated request context and
calls ``lookup`` before the local model and ``store`` after an answer it trusts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.cache.base import CachedAnswer, Embedder, Vectors
from edge_agent.cache.db import Database
from edge_agent.cache.embedding import MemoEmbedder
from edge_agent.cache.exact import ExactCache
from edge_agent.cache.indexer import Indexer
from edge_agent.cache.keys import CacheRequest
from edge_agent.cache.semantic import SemanticCache
from edge_agent.cache.verifier import Verifier, load_verifier
from shared.config import CacheSettings
from shared.taxonomy import Route
from shared.wire import TraceStep

log = logging.getLogger(__name__)


@dataclass
class CacheResult:
    answer: CachedAnswer | None
    trace: list[TraceStep] = field(default_factory=list)
    embedding: Vectors | None = None  # the question's vector, when the semantic stage embedded it

    @property
    def hit(self) -> bool:
        return self.answer is not None


class CacheService:
    def __init__(
        self,
        path: Path | str,
        settings: CacheSettings | None = None,
        embedder: Embedder | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self.settings = settings or CacheSettings()
        self.db = Database(path)
        self.exact = ExactCache(self.db, self.settings)
        self.semantic: SemanticCache | None = None
        self.indexer: Indexer | None = None  # embeds answered misses on spare CPU (``CacheStage``)
        if embedder is not None and self.settings.semantic:
            verifier = verifier or load_verifier(self.settings)
            self.semantic = SemanticCache(self.db, embedder, verifier, self.settings)
            settings = self.settings
            self.indexer = Indexer(capacity=settings.index_queue, max_per_s=settings.index_max_per_s)
        self._closed = False
        # stores that failed (a full disk, an I/O error): the answer was served, not remembered
        self.store_failures = 0

    def lookup(self, req: CacheRequest) -> CacheResult:
        result = self.lookup_exact(req)
        if result.hit or not self.settings.enabled:
            return result
        return self.lookup_semantic(req, result)

    def lookup_exact(self, req: CacheRequest) -> CacheResult:
        """The exact stage alone: one indexed read, cheap enough to run on the event loop."""
        result = CacheResult(None)
        if not self.settings.enabled:
            return result
        exact = self.exact.get(req)
        result.trace.append(exact.trace(Route.EXACT_CACHE))
        result.answer = exact.answer
        return result

    @property
    def semantic_blocks(self) -> bool:
        """Whether ``lookup_semantic`` does slow work (embedding, a vector scan) worth a thread."""
        return self.settings.enabled and self.semantic is not None

    def lookup_semantic(self, req: CacheRequest, result: CacheResult) -> CacheResult:
        """The semantic stage after an exact miss (``semantic_form``, then ``semantic_meaning``
        when the domain may match paraphrases); appends one trace step to ``result``."""
        result = self.semantic_form(req, result)
        if result.hit or not self.semantic_meaning_applies(req):
            return result
        result.trace.pop()  # the form step's miss: the meaning step's own step says it all
        return self.semantic_meaning(req, result)

    def semantic_form(self, req: CacheRequest, result: CacheResult) -> CacheResult:
        """A stored question of the same form or an alias: indexed reads, no embedding."""
        if self.semantic is None:
            result.trace.append(TraceStep(stage=Route.SEMANTIC_CACHE, decision="skip", reason="disabled"))
            return result
        sem = self.semantic.lookup_form(req)
        result.trace.append(sem.trace(Route.SEMANTIC_CACHE))
        result.answer = sem.answer
        return result

    def semantic_meaning_applies(self, req: CacheRequest) -> bool:
        """Whether a match by meaning could be served: the domain is relaxed below the safe point."""
        return (
            self.semantic is not None
            and self.semantic.verifier.serves_paraphrases(req.domain)
            and req.eligibility.ok
        )

    def semantic_meaning(self, req: CacheRequest, result: CacheResult) -> CacheResult:
        """Embed, search and verify (blocking: a worker thread's job); appends its trace step."""
        assert self.semantic is not None
        sem = self.semantic.get(req)
        result.trace.append(sem.trace(Route.SEMANTIC_CACHE))
        result.answer = sem.answer
        result.embedding = sem.embedding
        return result

    def store(self, req: CacheRequest, answer: str, model: str, embedding: Vectors | None = None) -> None:
        """Remember ``answer``; failures are logged, never raised, because the answer already exists.

        ``embedding``: the question's vector from ``lookup_semantic``, so it is not embedded twice."""
        if not self.settings.enabled or not answer.strip():
            return
        try:
            self.exact.put(req, answer, model)
            if self.semantic is not None:
                self.semantic.put(req, answer, model, embedding)
        except Exception:
            self.store_failures += 1
            log.exception("cache store failed")

    def store_exact(self, req: CacheRequest, answer: str, model: str) -> bool:
        """The exact entry alone (one short write); False when it failed, which is logged."""
        if not self.settings.enabled or not answer.strip():
            return False
        try:
            self.exact.put(req, answer, model)
        except Exception:
            self.store_failures += 1
            log.exception("cache store failed")
            return False
        return True

    def store_exact_many(self, rows: Sequence[tuple[CacheRequest, str, str]]) -> list[bool]:
        """Each (request, answer, model) as an exact entry, in one transaction; entry by entry when
        that fails, so one bad row costs only itself. False for each not stored (logged)."""
        ok = [self.settings.enabled and bool(answer.strip()) for _, answer, _ in rows]
        todo = [row for row, good in zip(rows, ok, strict=True) if good]
        try:
            self.exact.put_many(todo)
            return ok
        except Exception:
            log.warning("exact batch store failed; storing its entries one by one", exc_info=True)
        return [good and self.store_exact(*row) for row, good in zip(rows, ok, strict=True)]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.indexer is not None:
            self.indexer.close()  # before the file it writes to closes
        if self.semantic is not None and isinstance(self.semantic.embedder, MemoEmbedder):
            self.semantic.embedder.close_background()
        self.exact.flush_hits()  # the hit counts noted since the last store
        if self.semantic is not None:
            self.semantic.flush_hits()
        self.db.close()

    def __enter__(self) -> CacheService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
