"""The llama.cpp hub backend on the real SmolLM2 GGUF (quality does not matter here)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from cloud_hub.backends import Backend, BackendError, Completion, open_backend
from shared.config import HubModelEntry
from shared.wire import ChatMessage, SamplingParams

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

MESSAGES = [ChatMessage("user", "Count from one to five.")]
PARAMS = SamplingParams(max_tokens=12, temperature=0.0, seed=1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def backend(models_dir: Path) -> AsyncIterator[Backend]:
    entry = HubModelEntry(name="smollm2-135m-instruct", backend="llamacpp", max_model_len=1024)
    b = await open_backend(entry, models_dir)
    yield b
    await b.close()
    await b.close()


async def test_generate(backend: Backend) -> None:
    out = await backend.generate(MESSAGES, PARAMS)
    assert out.text.strip()
    assert out.usage.prompt_tokens > 0 and 0 < out.usage.completion_tokens <= 12
    assert out.finish_reason in {"stop", "length"}


async def test_stream_matches_generate(backend: Backend) -> None:
    items = [i async for i in backend.stream(MESSAGES, PARAMS)]
    *deltas, final = items
    assert isinstance(final, Completion) and len(deltas) > 1
    assert "".join(str(d) for d in deltas) == final.text
    assert final.text == (await backend.generate(MESSAGES, PARAMS)).text  # greedy: same answer


async def test_abandoned_stream_frees_the_model(backend: Backend) -> None:
    stream = backend.stream(MESSAGES, SamplingParams(max_tokens=200, temperature=0.0))
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    out = await asyncio.wait_for(backend.generate(MESSAGES, PARAMS), timeout=30)
    assert out.text.strip()


async def test_context_overflow_is_a_request_error(backend: Backend) -> None:
    huge = [ChatMessage("user", "word " * 3000)]
    with pytest.raises(BackendError) as info:
        await backend.generate(huge, PARAMS)
    assert not info.value.retryable
