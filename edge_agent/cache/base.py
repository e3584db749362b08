"""Types every cache store returns, and the embedding backend the semantic cache needs."""

from __future__ import annotations

from dataclasses import dataclass

from shared.embedding import Embedder, Vectors
from shared.wire import Scalar, TraceStep

__all__ = ["CachedAnswer", "Embedder", "Lookup", "Vectors"]


@dataclass(frozen=True)
class CachedAnswer:
    """A stored answer that fits the request; ``entry_id`` names the row it came from."""

    entry_id: int
    text: str
    model: str
    stage: str  # "exact_cache" | "semantic_cache"
    similarity: float = 1.0
    verifier: float | None = None
    origin: str = "local"  # "local" or "hub"
    matched: str = ""  # the stored question, for semantic hits


@dataclass(frozen=True)
class Lookup:
    """Result of one cache stage: an answer or the reason there is none, plus its trace step."""

    answer: CachedAnswer | None
    reason: str
    elapsed_ms: float = 0.0
    detail: dict[str, Scalar] | None = None
    embedding: Vectors | None = None  # the question as the semantic stage embedded it, for the store

    @property
    def hit(self) -> bool:
        return self.answer is not None

    def trace(self, stage: str) -> TraceStep:
        detail: dict[str, Scalar] = dict(self.detail or {})
        if self.answer is not None:
            detail.update(
                entry_id=self.answer.entry_id,
                similarity=round(self.answer.similarity, 4),
                origin=self.answer.origin,
            )
            if self.answer.verifier is not None:
                detail["verifier"] = round(self.answer.verifier, 4)
        return TraceStep(
            stage=stage,
            decision="hit" if self.hit else ("skip" if self.reason.startswith("ineligible") else "miss"),
            reason=self.reason,
            elapsed_ms=round(self.elapsed_ms, 3),
            detail=detail,
        )
