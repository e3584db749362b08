"""One local generation as the pipeline consumes it: the draft, then the rest, then its answer.

The policy judges the first tokens (``draft``) before any of them reach the client; only then does
the pipeline either stream the remainder (``rest``) or close the run and escalate. A run that was
closed after its draft can be resumed (``carried``): its tokens go back in as a prefix, so a local
fallback continues the draft instead of starting over.

A run may hold a place at the local model's admission gate (``slot``); closing the run frees it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from dataclasses import replace

from edge_agent.admission import Releasable
from edge_agent.backends.base import (
    Confidence,
    GenerationEnd,
    GenerationEvent,
    GenerationJob,
    LocalBackend,
    LocalBackendError,
    TokenStep,
)
from edge_agent.request import Answer, Draft
from shared.config import CostModel
from shared.taxonomy import Route
from shared.wire import Scalar, TraceStep, Usage


def elapsed_ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


class LocalRun:
    """Closing a run (``aclose``) stops the generation and frees the model; what it produced so
    far stays readable."""

    def __init__(
        self,
        backend: LocalBackend,
        job: GenerationJob,
        carried: LocalRun | None = None,
        *,
        slot: Releasable | None = None,
    ) -> None:
        self.model = backend.model_name
        self._slot = slot
        self.tokens: list[int] = []
        self.pieces: list[str] = []
        self.confidence = Confidence()
        if carried is not None:
            self.tokens = list(carried.tokens)
            self.pieces = list(carried.pieces)
            self.confidence.extend(carried.confidence)
            job = replace(job, prefix_tokens=tuple(carried.tokens))
        self._events: AsyncGenerator[GenerationEvent, None] = backend.stream(job)
        self.end: GenerationEnd | None = None
        self.started = time.perf_counter()

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    async def _next(self) -> str:
        try:
            event = await anext(self._events)
        except StopAsyncIteration:
            raise LocalBackendError("the local model stopped without finishing its answer") from None
        if isinstance(event, TokenStep):
            self.tokens.append(event.token)
            self.confidence.add(event.logprob)
        else:
            self.end = event
        self.pieces.append(event.text)
        return event.text

    async def draft(self, n_tokens: int) -> Draft:
        while self.end is None and len(self.tokens) < n_tokens:
            await self._next()
        return Draft(self.text, self.confidence, finished=self.end is not None)

    async def rest(self) -> AsyncGenerator[str, None]:
        while self.end is None:
            text = await self._next()
            if text:
                yield text

    async def aclose(self) -> None:
        try:
            await self._events.aclose()
        finally:
            if self._slot is not None:
                self._slot.release()

    def answer(
        self, cost_model: CostModel, trace: list[TraceStep], escalation_reason: str, *, fallback: bool
    ) -> Answer:
        """The finished run as the request's answer; appends its trace step to ``trace``."""
        end = self.end
        assert end is not None, "answer() needs a finished run"
        conf = self.confidence
        cost = cost_model.estimate(end.prompt_tokens, end.completion_tokens)
        detail: dict[str, Scalar] = {
            "model": self.model,
            "mean_prob": round(conf.mean_prob, 4),
            "min_prob": round(conf.min_prob, 4),
            "tokens": end.completion_tokens,
            "cost_usd": cost,
            "token_probs": ",".join(f"{p:g}" for p in conf.probs(64)),
        }
        reason = "fallback after a failed escalation" if fallback else "answered by the local model"
        trace.append(TraceStep(Route.EDGE_LOCAL, "answer", reason, elapsed_ms(self.started), detail))
        return Answer(
            text=self.text,
            finish_reason=end.finish_reason,
            usage=Usage(end.prompt_tokens, end.completion_tokens),
            route=Route.EDGE_LOCAL,
            model=self.model,
            trace=tuple(trace),
            confidence=conf.mean_prob,
            cost_usd=cost,
            fallback=fallback,
            escalation_reason=escalation_reason,
        )
