"""The llama.cpp backend against a real SmolLM2 GGUF."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import llama_cpp
import pytest

from edge_agent.backends.base import (
    GenerationEnd,
    GenerationEvent,
    GenerationJob,
    PromptTooLong,
    TokenStep,
)
from edge_agent.backends.llamacpp import LlamaCppBackend
from shared.wire import ChatMessage, SamplingParams

QUESTION = (ChatMessage(role="user", content="Name three colours of the rainbow."),)


async def _collect(backend: LlamaCppBackend, job: GenerationJob) -> tuple[list[TokenStep], GenerationEnd]:
    steps: list[TokenStep] = []
    async for event in backend.stream(job):
        if isinstance(event, TokenStep):
            steps.append(event)
        else:
            return steps, event
    raise AssertionError("stream ended without GenerationEnd")


def _text(steps: list[TokenStep], end: GenerationEnd) -> str:
    return "".join(s.text for s in steps) + end.text


async def test_max_tokens_bounds_the_answer(smollm_backend: LlamaCppBackend) -> None:
    job = GenerationJob(SamplingParams(max_tokens=7, temperature=0.0), QUESTION)
    steps, end = await _collect(smollm_backend, job)
    assert end.finish_reason == "length"
    assert end.completion_tokens == len(steps) == 7
    assert end.prompt_tokens == len(smollm_backend.prompt_tokens(job))
    assert all(s.logprob <= 0.0 for s in steps)


async def test_logprobs_match_llama_cpp_logits_all(
    smollm_backend: LlamaCppBackend, smollm_gguf: Path
) -> None:
    """The processor's log-probs equal what llama.cpp reports with logits_all=True."""
    prompt = "The capital of France is"
    job = GenerationJob(SamplingParams(max_tokens=6, temperature=0.0), prompt=prompt)
    steps, _ = await _collect(smollm_backend, job)
    reference = llama_cpp.Llama(str(smollm_gguf), n_ctx=256, n_threads=1, logits_all=True, verbose=False)
    try:
        out = reference.create_completion(prompt, max_tokens=6, temperature=0.0, logprobs=1)
    finally:
        reference.close()
    expected = out["choices"][0]["logprobs"]["token_logprobs"]  # type: ignore[index]
    assert len(expected) == len(steps)
    for ours, theirs in zip(steps, expected, strict=True):
        assert math.isclose(ours.logprob, float(theirs), abs_tol=2e-3)


async def test_stop_sequence_is_cut_and_never_shown(smollm_backend: LlamaCppBackend) -> None:
    free = GenerationJob(SamplingParams(max_tokens=24, temperature=0.0), QUESTION)
    steps, end = await _collect(smollm_backend, free)
    full = _text(steps, end)
    words = full.split()
    assert len(words) >= 3, full
    stop = words[2]
    job = GenerationJob(SamplingParams(max_tokens=24, temperature=0.0, stop=[stop]), QUESTION)
    steps, end = await _collect(smollm_backend, job)
    text = _text(steps, end)
    assert end.finish_reason == "stop"
    assert stop not in text
    assert full.startswith(text)


async def test_seed_makes_sampling_repeatable(smollm_backend: LlamaCppBackend) -> None:
    params = SamplingParams(max_tokens=16, temperature=1.0, seed=1234)
    texts = [_text(*await _collect(smollm_backend, GenerationJob(params, QUESTION))) for _ in range(2)]
    assert texts[0] == texts[1]


async def test_resume_from_prefix_continues_the_draft(smollm_backend: LlamaCppBackend) -> None:
    params = SamplingParams(max_tokens=16, temperature=0.0)
    steps, end = await _collect(smollm_backend, GenerationJob(params, QUESTION))
    whole = _text(steps, end)
    draft = steps[:6]
    rest, end2 = await _collect(
        smollm_backend, GenerationJob(params, QUESTION, prefix_tokens=[s.token for s in draft])
    )
    assert end2.completion_tokens == end.completion_tokens
    assert "".join(s.text for s in draft) + _text(rest, end2) == whole


async def test_closing_a_stream_cancels_and_frees_the_model(smollm_backend: LlamaCppBackend) -> None:
    job = GenerationJob(SamplingParams(max_tokens=400, temperature=0.0), QUESTION)
    events = smollm_backend.stream(job)
    seen: list[GenerationEvent] = [await anext(events) for _ in range(3)]
    await events.aclose()
    assert all(isinstance(e, TokenStep) for e in seen)
    # the worker must be free again well before 400 tokens could have been generated
    short = GenerationJob(SamplingParams(max_tokens=2, temperature=0.0), QUESTION)
    _, end = await asyncio.wait_for(_collect(smollm_backend, short), timeout=60)
    assert end.completion_tokens == 2


async def test_prompt_longer_than_context_is_refused(smollm_backend: LlamaCppBackend) -> None:
    huge = "word " * (smollm_backend.n_ctx + 50)
    with pytest.raises(PromptTooLong):
        await _collect(smollm_backend, GenerationJob(SamplingParams(max_tokens=4), prompt=huge))


async def test_concurrent_streams_are_served_one_at_a_time(smollm_backend: LlamaCppBackend) -> None:
    jobs = [GenerationJob(SamplingParams(max_tokens=5, temperature=0.0), QUESTION) for _ in range(3)]
    results = await asyncio.gather(*(_collect(smollm_backend, j) for j in jobs))
    texts = {_text(s, e) for s, e in results}
    assert len(texts) == 1  # greedy and serialised: identical answers, no interleaving damage
