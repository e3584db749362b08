"""Token counts for an answer no model generated just now: a cache hit.

The caches store text, not counts, and the answer may have come from any model (a hub model's
answer shared through the global cache, say). A hit is therefore counted with the edge model's
own tokenizer, the same way every local answer is counted: its prompt as the chat template
renders it, and the stored text. The API reports all of that prompt as cached
(``prompt_tokens_details.cached_tokens``), and the answer cost nothing.

Counting needs a backend that can tokenize (``PromptTokenizer``; the llama.cpp backend can). For
one that cannot, the hit reports zero tokens, as before.

A cache serves the same prompts and the same stored texts again and again, and counting one hit
(a chat-template render and three tokenizations) cost more than the rest of the hit together.
``HitUsage`` counts each prompt and each text once and remembers the counts by digest, so a
repeated hit never reaches the tokenizer and never leaves the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from typing import Protocol, runtime_checkable

from edge_agent.backends.base import GenerationJob
from edge_agent.request import InferenceRequest
from shared.wire import Usage

log = logging.getLogger(__name__)


@runtime_checkable
class PromptTokenizer(Protocol):
    def prompt_tokens(self, job: GenerationJob) -> list[int]:
        """The tokens the model would read for ``job`` (its chat template applied)."""
        ...


def count_usage(tokenizer: PromptTokenizer, req: InferenceRequest, text: str) -> Usage:
    params = req.params
    prompt = len(tokenizer.prompt_tokens(GenerationJob(params, req.messages, req.prompt)))
    # a raw prompt gains the model's begin-of-text token (if it has one): not part of the answer
    baseline = len(tokenizer.prompt_tokens(GenerationJob(params, (), "")))
    answer = len(tokenizer.prompt_tokens(GenerationJob(params, (), text))) - baseline if text else 0
    return Usage(prompt_tokens=prompt, completion_tokens=max(answer, 0))


async def cache_hit_usage(backend: object, req: InferenceRequest, text: str) -> Usage | None:
    """The hit's usage, or ``None`` when the backend cannot count (or failed to)."""
    if not isinstance(backend, PromptTokenizer):
        return None
    try:
        return await asyncio.to_thread(count_usage, backend, req, text)
    except Exception:  # a count is a courtesy: never fail the answer over it
        log.warning("could not count the tokens of a cache hit", exc_info=True)
        return None


class HitUsage:
    """``cache_hit_usage`` with the counts remembered (at most ``capacity`` prompts and texts)."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._prompts: OrderedDict[bytes, int] = OrderedDict()
        self._texts: OrderedDict[bytes, int] = OrderedDict()
        self.counted = 0  # hits that needed the tokenizer
        # a runtime-checkable protocol's isinstance walks its members: once per backend class
        self._can_count: dict[type, bool] = {}

    async def count(self, backend: object, req: InferenceRequest, text: str) -> Usage | None:
        kind = type(backend)
        can = self._can_count.get(kind)
        if can is None:
            can = self._can_count[kind] = isinstance(backend, PromptTokenizer)
        if not can:
            return None
        # exactly what ``prompt_tokens`` reads: each message's role and content, or the raw prompt
        parts = [req.prompt] if req.prompt is not None else []
        for m in req.messages:
            parts += (m.role, m.content)
        pkey, tkey = _digest(parts), _digest([text])
        prompt, answer = self._prompts.get(pkey), self._texts.get(tkey)
        if prompt is None or answer is None:
            usage = await cache_hit_usage(backend, req, text)
            if usage is None:
                return None
            self.counted += 1
            prompt, answer = usage.prompt_tokens, usage.completion_tokens
        _remember(self._prompts, pkey, prompt, self.capacity)
        _remember(self._texts, tkey, answer, self.capacity)
        return Usage(prompt_tokens=prompt, completion_tokens=answer)


def _digest(parts: list[str]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        raw = part.encode("utf-8", "surrogatepass")
        h.update(len(raw).to_bytes(8, "big"))
        h.update(raw)
    return h.digest()


def _remember(memo: OrderedDict[bytes, int], key: bytes, value: int, capacity: int) -> None:
    memo[key] = value
    memo.move_to_end(key)
    while len(memo) > capacity:
        memo.popitem(last=False)
