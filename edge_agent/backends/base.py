"""The contract between the pipeline and a local text model.

A backend streams ``TokenStep`` events and ends with one ``GenerationEnd``; closing the async
iterator early cancels the generation (the pipeline does this when it escalates after the draft).
Each step carries the chosen token's log-probability under the model's own distribution, so
confidence does not depend on the sampling temperature.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from shared.config import EdgeSettings
from shared.errors import BackendError as BackendError
from shared.wire import ChatMessage, SamplingParams


class LocalBackendError(BackendError):
    """The local model failed while generating (the tree of errors: ``shared.errors``, whose
    ``BackendError`` base this module re-exports for callers that catch any backend failure)."""


class PromptTooLong(LocalBackendError):
    """The prompt does not fit the model's context window."""

    def __init__(self, prompt_tokens: int, n_ctx: int) -> None:
        super().__init__(
            f"the prompt has {prompt_tokens} tokens but the local model's context window is {n_ctx}"
        )
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx


@dataclass(frozen=True)
class GenerationJob:
    """One request to the local model: chat ``messages`` or a raw ``prompt`` (exactly one).

    ``prefix_tokens`` resumes an earlier generation: those tokens are appended to the prompt as
    the start of the answer, so a draft that was kept aside is continued instead of redone.
    """

    params: SamplingParams
    messages: Sequence[ChatMessage] = ()
    prompt: str | None = None
    prefix_tokens: Sequence[int] = ()


@dataclass(frozen=True)
class TokenStep:
    """One generated token. ``text`` is what may be shown now (held back near a stop sequence)."""

    token: int
    logprob: float
    text: str


@dataclass(frozen=True)
class GenerationEnd:
    finish_reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int
    text: str = ""  # held-back text released at the end


@dataclass
class Confidence:
    """Running token-probability statistics of one answer."""

    logprobs: list[float] = field(default_factory=list)

    def add(self, logprob: float) -> None:
        self.logprobs.append(logprob)

    def extend(self, other: Confidence) -> None:
        self.logprobs.extend(other.logprobs)

    @property
    def count(self) -> int:
        return len(self.logprobs)

    @property
    def mean_prob(self) -> float:
        """Mean token probability; 1.0 for an empty answer (nothing uncertain was said)."""
        if not self.logprobs:
            return 1.0
        return sum(math.exp(lp) for lp in self.logprobs) / len(self.logprobs)

    @property
    def min_prob(self) -> float:
        return math.exp(min(self.logprobs)) if self.logprobs else 1.0

    def probs(self, limit: int | None = None) -> list[float]:
        values = self.logprobs if limit is None else self.logprobs[:limit]
        return [round(math.exp(lp), 4) for lp in values]


GenerationEvent = TokenStep | GenerationEnd


class LocalBackend(Protocol):
    """A local text model. Implementations serialise access to the model themselves."""

    @property
    def model_name(self) -> str: ...

    @property
    def n_ctx(self) -> int: ...

    def stream(self, job: GenerationJob) -> AsyncGenerator[GenerationEvent, None]: ...

    async def close(self) -> None: ...


class LocalBackendFactory(Protocol):
    """The class side of a local backend: ``edge_agent.assemble`` builds the one that
    ``local_model.backend`` names (``shared.backends.EDGE_BACKENDS``) with it. Blocking: it loads."""

    def from_config(self, settings: EdgeSettings) -> LocalBackend: ...
