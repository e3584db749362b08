"""The llama.cpp hub backend on the real SmolLM2 GGUF (quality does not matter here)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from cloud_hub.backends import Backend, Completion, HubBackendError, open_backend
from cloud_hub.backends.llamacpp import LlamaCppBackend
from cloud_hub.dispatch import Dispatcher
from cloud_hub.registry import ModelRegistry, RegisteredModel
from shared.config import HubModelEntry, default_threads
from shared.wire import Body, ChatMessage, Escalate, Reply, SamplingParams

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
    with pytest.raises(HubBackendError) as info:
        await backend.generate(huge, PARAMS)
    assert not info.value.retryable


async def test_stream_counts_usage_as_generate_does(backend: Backend) -> None:
    """The prompt as the chat template renders it, not the bare message text (7 tokens against
    37 before): a streamed answer is priced like the same answer unstreamed."""
    *_, final = [i async for i in backend.stream(MESSAGES, PARAMS)]
    plain = await backend.generate(MESSAGES, PARAMS)
    assert isinstance(final, Completion)
    assert final.usage == plain.usage
    assert final.usage.prompt_tokens > len(MESSAGES[0].content.split()) + 10  # the template's turns


async def test_threads_come_from_the_entry(backend: Backend, models_dir: Path) -> None:
    assert isinstance(backend, LlamaCppBackend) and backend.n_threads == default_threads()
    entry = HubModelEntry(name="smollm2-135m-instruct", backend="llamacpp", max_model_len=256, n_threads=3)
    three = await open_backend(entry, models_dir)
    try:
        assert isinstance(three, LlamaCppBackend) and three.n_threads == 3
    finally:
        await three.close()


async def test_top_p_zero_is_served_greedily(backend: Backend) -> None:
    """OpenAI and the edge take ``top_p: 0``; the hub answers it as greedy decoding, whatever
    the temperature and seed, instead of refusing it."""
    entry = HubModelEntry(name="smollm2-135m-instruct", backend="llamacpp")
    dispatcher = Dispatcher(ModelRegistry([RegisteredModel(entry, backend)], default_model=entry.name))
    greedy = (await backend.generate(MESSAGES, SamplingParams(max_tokens=12, temperature=0.0))).text
    for seed in (1, 2):
        sent: list[Body] = []

        async def send(body: Body, sent: list[Body] = sent) -> None:
            sent.append(body)

        params = SamplingParams(max_tokens=12, temperature=1.5, top_p=0.0, seed=seed)
        req = Escalate("r1", entry.name, list(MESSAGES), params, deadline=time.time() + 60)
        await dispatcher.handle(req, "edge-a", send)
        [reply] = sent
        assert isinstance(reply, Reply), reply
        assert reply.text == greedy
