"""Echo backend: answers with the last user message.

It costs nothing and takes microseconds, which makes it the baseline for measuring what the link
and the hub themselves add, and a model-free backend for link tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from cloud_hub.backends.base import Completion, StreamItem
from shared.config import HubModelEntry
from shared.wire import ChatMessage, SamplingParams, Usage


def _answer(messages: Sequence[ChatMessage], params: SamplingParams) -> tuple[list[str], Usage, str]:
    last = next((m.content for m in reversed(messages) if m.role == "user"), "")
    words = last.split(" ")
    prompt_tokens = sum(len(m.content.split()) for m in messages)
    finish = "stop"
    if len(words) > params.max_tokens:
        words, finish = words[: params.max_tokens], "length"
    pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
    return pieces, Usage(prompt_tokens=prompt_tokens, completion_tokens=len(words)), finish


class EchoBackend:
    def __init__(self) -> None:
        self.closed = False

    @classmethod
    async def from_config(cls, entry: HubModelEntry, models_dir: Path) -> EchoBackend:
        return cls()

    async def generate(self, messages: Sequence[ChatMessage], params: SamplingParams) -> Completion:
        pieces, usage, finish = _answer(messages, params)
        return Completion(text="".join(pieces), finish_reason=finish, usage=usage)

    async def stream(
        self, messages: Sequence[ChatMessage], params: SamplingParams
    ) -> AsyncIterator[StreamItem]:
        pieces, usage, finish = _answer(messages, params)
        for piece in pieces:
            yield piece
        yield Completion(text="".join(pieces), finish_reason=finish, usage=usage)

    async def close(self) -> None:
        self.closed = True
