"""Types every cache store returns, and the backends (embedder, verifier) the semantic cache needs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.embedding import Embedder, Vectors
from shared.wire import Scalar, TraceStep

__all__ = ["CachedAnswer", "CandidateVerifier", "Embedder", "Lookup", "Vectors"]


class CandidateVerifier(Protocol):
    """Decides whether a semantic candidate may answer a new question (logistic or cross-encoder)."""

    min_cosine: float

    @property
    def default_threshold(self) -> float: ...

    def threshold(self, domain: str) -> float: ...

    def raise_threshold(self, at_least: float) -> None:
        """A stricter operating point for every domain; never lowers one an audit raised."""
        ...

    def raise_domain(self, domain: str, at_least: float) -> None:
        """A stricter operating point for ``domain`` alone (a stored audit result)."""
        ...

    def accept(self, cosine: float, cached: str, query: str, domain: str) -> tuple[bool, float, str]:
        """(serve it?, probability, reason: "verified", "verifier_rejected", a veto or a gate)."""
        ...

    def refine(self, domain: str, audit: Sequence[tuple[float, bool]], max_false_rate: float) -> float:
        """Raise ``domain``'s threshold until audited (probability, was_correct) hits are clean."""
        ...


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
