"""Model-free stand-ins for the pipeline's two outside parts, so its routing runs in milliseconds.

``ScriptedBackend`` is a ``LocalBackend`` that "generates" a fixed answer, one scripted token and
probability at a time, resumes from ``prefix_tokens`` the way llama.cpp does, and can fail at a
given token. ``ScriptedHub`` is a ``HubClient`` that answers, streams, fails before answering or
breaks mid-stream. Both write what happens to them into a shared ``log``, so a test can check the
order of events across the two (the draft's stream closed before the hub was asked, say).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, Sequence

from edge_agent.backends.base import (
    BackendError,
    GenerationEnd,
    GenerationEvent,
    GenerationJob,
    PromptTooLong,
    TokenStep,
)
from edge_agent.request import Decision, Draft, InferenceRequest
from shared.wire import Escalate, Reply, ReplyChunk, TraceStep, Usage

WORDS = ("Paris", " is", " the", " capital", " of", " France", ".")


def words(prob: float) -> list[tuple[str, float]]:
    """``WORDS``, each token at probability ``prob``."""
    return [(w, prob) for w in WORDS]


class ScriptedBackend:
    """Each job answers ``tokens`` (text, probability) from where its ``prefix_tokens`` end."""

    def __init__(
        self,
        tokens: Sequence[tuple[str, float]],
        *,
        log: list[str] | None = None,
        fail_at: int | None = None,
        prompt_too_long: bool = False,
        name: str = "scripted-local",
    ) -> None:
        self.tokens = list(tokens)
        self.log = log if log is not None else []
        self.fail_at = fail_at  # every run raises on reaching this token index
        self.prompt_too_long = prompt_too_long
        self.jobs: list[GenerationJob] = []
        self.open = 0  # streams started and not yet finished or closed
        self._name = name

    @property
    def text(self) -> str:
        return "".join(t for t, _ in self.tokens)

    @property
    def model_name(self) -> str:
        return self._name

    @property
    def n_ctx(self) -> int:
        return 2048

    async def stream(self, job: GenerationJob) -> AsyncGenerator[GenerationEvent, None]:
        self.jobs.append(job)
        n = len(self.jobs)
        if self.prompt_too_long:
            raise PromptTooLong(4096, self.n_ctx)
        self.open += 1
        self.log.append(f"local {n} start")
        try:
            for i in range(len(job.prefix_tokens), len(self.tokens)):
                if i == self.fail_at:
                    raise BackendError("the scripted model broke")
                await asyncio.sleep(0)  # a real backend hands each token over from its thread
                text, prob = self.tokens[i]
                yield TokenStep(i, math.log(prob), text)
            yield GenerationEnd("stop", prompt_tokens=5, completion_tokens=len(self.tokens))
        finally:
            self.open -= 1
            self.log.append(f"local {n} closed")

    async def close(self) -> None:
        return None


class ScriptedHub:
    """Answers ``text`` on ``route``; ``fail`` raises before any text, ``break_after`` after that
    many streamed words."""

    def __init__(
        self,
        text: str = "Paris, on the Seine.",
        *,
        route: str = "hub_oss",
        connected: bool = True,
        fail: Exception | None = None,
        break_after: int | None = None,
        log: list[str] | None = None,
    ) -> None:
        self.text = text
        self.route = route
        self.connected = connected
        self.fail = fail
        self.break_after = break_after
        self.log = log if log is not None else []
        self.hub_models: list[str] = ["hub-model"]
        self.media_models: list[str] = []
        self.requests: list[Escalate] = []

    def _reply(self, request: Escalate) -> Reply:
        trace = [TraceStep(self.route, "answer", "scripted")]
        usage = Usage(5, len(self.text.split()))
        return Reply(
            request.request_id, self.text, "hub-model", self.route, usage=usage, cost_usd=0.01, trace=trace
        )

    def _asked(self, request: Escalate) -> None:
        self.requests.append(request)
        self.log.append("hub asked")
        if self.fail is not None:
            raise self.fail

    async def escalate(self, request: Escalate) -> Reply:
        self._asked(request)
        await asyncio.sleep(0)
        return self._reply(request)

    async def stream(self, request: Escalate) -> AsyncGenerator[ReplyChunk | Reply, None]:
        self._asked(request)
        for seq, word in enumerate(self.text.split(" ")):
            if seq == self.break_after:
                raise ConnectionError("the hub went away mid-answer")
            await asyncio.sleep(0)
            yield ReplyChunk(request.request_id, seq, word if seq == 0 else f" {word}", self.route)
        yield self._reply(request)


class ScriptedPolicy:
    """An ``EscalationPolicy`` with fixed verdicts: the cascade's shape without its heads."""

    name = "scripted"

    def __init__(self, *, before: Decision | None = None, after: Decision | None = None) -> None:
        self.before = before
        self.after = after or Decision(False, "scripted: keep")
        self.drafts: list[Draft] = []

    def before_draft(self, req: InferenceRequest) -> Decision | None:
        return self.before

    def decide(self, req: InferenceRequest, draft: Draft) -> Decision:
        self.drafts.append(draft)
        return self.after
