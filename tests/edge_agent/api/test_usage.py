"""A cache hit's usage is counted once per prompt and per stored text, then remembered."""

from __future__ import annotations

import asyncio

from edge_agent.api.usage import HitUsage, count_usage
from edge_agent.backends.base import GenerationJob
from edge_agent.request import InferenceRequest
from edge_agent.tenancy import RequestContext
from shared.wire import ChatMessage, SamplingParams, Usage


class WordTokenizer:
    """A tokenizer with a visible cost: one token per word plus a begin token, calls counted."""

    def __init__(self) -> None:
        self.calls = 0

    def prompt_tokens(self, job: GenerationJob) -> list[int]:
        self.calls += 1
        if job.prompt is not None:
            return [0, *range(len(job.prompt.split()))]
        return [0, *range(sum(len(m.role.split()) + len(m.content.split()) for m in job.messages))]


def ask(text: str) -> InferenceRequest:
    return InferenceRequest(
        ctx=RequestContext(request_id="r", tenant="t"),
        model="auto",
        messages=(ChatMessage(role="user", content=text),),
        params=SamplingParams(temperature=0.0, max_tokens=64),
    )


def test_a_repeated_hit_is_counted_as_before_without_the_tokenizer() -> None:
    tok, memo = WordTokenizer(), HitUsage()
    req, text = ask("What is the capital of France?"), "Paris is the capital."
    expected = count_usage(WordTokenizer(), req, text)
    assert expected == Usage(prompt_tokens=8, completion_tokens=4)
    first = asyncio.run(memo.count(tok, req, text))
    calls = tok.calls
    again = [asyncio.run(memo.count(tok, ask("What is the capital of France?"), text)) for _ in range(3)]
    assert first == expected and again == [expected] * 3
    assert tok.calls == calls and memo.counted == 1


def test_another_prompt_or_text_is_counted_afresh() -> None:
    tok, memo = WordTokenizer(), HitUsage()
    asyncio.run(memo.count(tok, ask("What is the capital of France?"), "Paris."))
    other = asyncio.run(memo.count(tok, ask("What is the capital of Peru?  Tell me"), "Paris."))
    assert other == count_usage(WordTokenizer(), ask("What is the capital of Peru?  Tell me"), "Paris.")
    longer = asyncio.run(memo.count(tok, ask("What is the capital of France?"), "It is Paris."))
    assert longer == Usage(prompt_tokens=8, completion_tokens=3)
    assert memo.counted == 3


def test_the_memory_is_bounded() -> None:
    tok, memo = WordTokenizer(), HitUsage(capacity=2)
    for i in range(5):
        asyncio.run(memo.count(tok, ask(f"question {i}"), f"answer {i}"))
    assert len(memo._prompts) == 2 and len(memo._texts) == 2
    asyncio.run(memo.count(tok, ask("question 0"), "answer 0"))  # forgotten: counted again
    assert memo.counted == 6


def test_a_backend_that_cannot_tokenize_reports_nothing() -> None:
    assert asyncio.run(HitUsage().count(object(), ask("q"), "a")) is None
