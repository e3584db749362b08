"""Response objects in the OpenAI shapes, for chat (``chat.completion[.chunk]``) and legacy text
completions (``text_completion``), each with our ``edgeroute`` member added.

One ``Shape`` per endpoint keeps the handlers identical for both: only the JSON differs. Usage
has the same form streamed or not, with ``prompt_tokens_details.cached_tokens`` always present
(all of a cache hit's prompt, else 0). A stream's chunks all name ``Shape.model``, set once.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from edge_agent.request import Answer
from shared.wire import Usage

Kind = Literal["chat", "text"]


def usage_dict(usage: Usage, cached_tokens: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }


@dataclass
class Shape:
    """Builds every JSON object of one response; ``id`` and ``created`` are fixed per response."""

    kind: Kind
    model: str
    include_usage: bool = False
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        if not self.id:
            prefix = "chatcmpl" if self.kind == "chat" else "cmpl"
            self.id = f"{prefix}-{os.urandom(16).hex()}"

    def _head(self, obj: str, model: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": model}

    def full(self, answer: Answer, cached_tokens: int = 0) -> dict[str, Any]:
        if self.kind == "chat":
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text, "refusal": None},
                "logprobs": None,
                "finish_reason": answer.finish_reason,
            }
            body = self._head("chat.completion", answer.model)
        else:
            choice = {
                "index": 0,
                "text": answer.text,
                "logprobs": None,
                "finish_reason": answer.finish_reason,
            }
            body = self._head("text_completion", answer.model)
        body["choices"] = [choice]
        body["usage"] = usage_dict(answer.usage, cached_tokens)
        body["edgeroute"] = answer.edgeroute_field()
        return body

    def chunk(
        self, text: str | None, finish_reason: str | None = None, *, first: bool = False
    ) -> dict[str, Any]:
        if self.kind == "chat":
            delta: dict[str, Any] = {}
            if first:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice: dict[str, Any] = {
                "index": 0,
                "delta": delta,
                "logprobs": None,
                "finish_reason": finish_reason,
            }
            body = self._head("chat.completion.chunk", self.model)
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
            body = self._head("text_completion", self.model)
        body["choices"] = [choice]
        if self.include_usage and self.kind == "chat":
            body["usage"] = None  # chat chunks name it (null) until the usage chunk fills it in
        return body

    def last_chunks(self, answer: Answer, cached_tokens: int = 0) -> list[dict[str, Any]]:
        """The finishing chunk, then the usage chunk if asked for; the last one carries ``edgeroute``."""
        finish = self.chunk(None if self.kind == "chat" else "", answer.finish_reason)
        chunks = [finish]
        if self.include_usage:
            usage = self._head(
                "chat.completion.chunk" if self.kind == "chat" else "text_completion", self.model
            )
            usage["choices"] = []
            usage["usage"] = usage_dict(answer.usage, cached_tokens)
            chunks.append(usage)
        chunks[-1]["edgeroute"] = answer.edgeroute_field()
        return chunks
