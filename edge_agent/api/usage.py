"""Token counts for an answer no model generated just now: a cache hit.

The caches store text, not counts, and the answer may have come from any model (a hub model's
answer shared through the global cache, say). A hit is therefore counted with the edge model's
own tokenizer, the same way every local answer is counted: its prompt as the chat template
renders it, and the stored text. The API reports all of that prompt as cached
(``prompt_tokens_details.cached_tokens``), and the answer cost nothing.

Counting needs a backend that can tokenize (``PromptTokenizer``; the llama.cpp backend can). For
one that cannot, the hit reports zero tokens, as before.
"""

from __future__ import annotations

import asyncio
import logging
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
