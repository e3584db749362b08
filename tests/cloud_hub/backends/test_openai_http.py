"""The openai_http backend against a local server speaking the OpenAI protocol."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from cloud_hub.backends import Completion, HubBackendError, open_backend
from cloud_hub.backends.openai_http import OpenAIHTTPBackend
from cloud_hub.dispatch import Dispatcher
from cloud_hub.registry import ModelRegistry, RegisteredModel
from shared.config import CostModel, HubModelEntry
from shared.taxonomy import Tier
from shared.wire import Body, ChatMessage, Escalate, Reply, SamplingParams
from tests.cloud_hub.fake_openai import API_KEY, FakeOpenAI

MESSAGES = [ChatMessage("system", "be brief"), ChatMessage("user", "name a prime")]
PARAMS = SamplingParams(max_tokens=32, temperature=0.0, stop=["\n"], seed=7)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def backend(fake: FakeOpenAI) -> AsyncIterator[OpenAIHTTPBackend]:
    b = OpenAIHTTPBackend(fake.base_url, "frontier-large", api_key=API_KEY)
    yield b
    await b.close()


async def test_generate(backend: OpenAIHTTPBackend, fake: FakeOpenAI) -> None:
    out = await backend.generate(MESSAGES, PARAMS)
    assert out.text == "frontier says: name a prime"
    assert (out.finish_reason, out.usage.prompt_tokens, out.usage.completion_tokens) == ("stop", 5, 5)
    sent = fake.requests[-1]
    assert sent["model"] == "frontier-large" and sent["max_tokens"] == 32
    assert sent["stop"] == ["\n"] and sent["seed"] == 7 and "stream" not in sent


async def test_stream(backend: OpenAIHTTPBackend, fake: FakeOpenAI) -> None:
    items = [i async for i in backend.stream(MESSAGES, PARAMS)]
    *deltas, final = items
    assert isinstance(final, Completion)
    assert "".join(str(d) for d in deltas) == final.text == "frontier says: name a prime"
    assert final.usage.completion_tokens == 5  # from the usage event, not counted
    assert fake.requests[-1]["stream_options"] == {"include_usage": True}


async def test_stream_without_usage_event_estimates(backend: OpenAIHTTPBackend, fake: FakeOpenAI) -> None:
    fake.include_usage = False
    *_, final = [i async for i in backend.stream(MESSAGES, PARAMS)]
    assert isinstance(final, Completion) and final.usage.completion_tokens == 5


@pytest.mark.parametrize(
    ("status", "retryable"), [(400, False), (404, False), (429, True), (500, True), (503, True)]
)
async def test_http_errors(
    backend: OpenAIHTTPBackend, fake: FakeOpenAI, status: int, retryable: bool
) -> None:
    fake.fail_status = status
    with pytest.raises(HubBackendError) as info:
        await backend.generate(MESSAGES, PARAMS)
    assert info.value.retryable is retryable and f"HTTP {status}" in str(info.value)
    assert f"simulated failure {status}" in str(info.value)  # the provider's message is kept
    with pytest.raises(HubBackendError) as streamed:
        [i async for i in backend.stream(MESSAGES, PARAMS)]
    assert streamed.value.retryable is retryable


async def test_wrong_key_is_not_retryable(fake: FakeOpenAI) -> None:
    b = OpenAIHTTPBackend(fake.base_url, "frontier-large", api_key="sk-wrong")
    try:
        with pytest.raises(HubBackendError) as info:
            await b.generate(MESSAGES, PARAMS)
        assert not info.value.retryable and "Incorrect API key" in str(info.value)
    finally:
        await b.close()


async def test_error_event_mid_stream(backend: OpenAIHTTPBackend, fake: FakeOpenAI) -> None:
    fake.fail_mid_stream = True
    seen: list[object] = []
    with pytest.raises(HubBackendError, match="upstream overloaded"):
        async for item in backend.stream(MESSAGES, PARAMS):
            seen.append(item)
    assert seen == ["frontier"]


async def test_unreachable_upstream_is_retryable() -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = OpenAIHTTPBackend(f"http://127.0.0.1:{port}/v1", "m")
    try:
        with pytest.raises(HubBackendError) as info:
            await b.generate(MESSAGES, PARAMS)
        assert info.value.retryable
    finally:
        await b.close()


async def test_registry_entry_routes_to_frontier(fake: FakeOpenAI, tmp_path: Path) -> None:
    entry = HubModelEntry(
        name="frontier",
        backend="openai_http",
        tier=Tier.FRONTIER,
        base_url=fake.base_url,
        served_model="frontier-large",
        api_key=SecretStr(API_KEY),
        cost=CostModel(usd_per_1k_prompt=3.0, usd_per_1k_completion=15.0),
    )
    registry = ModelRegistry([RegisteredModel(entry, await open_backend(entry, tmp_path))])
    sent: list[Body] = []

    async def send(body: Body) -> None:
        sent.append(body)

    req = Escalate("f1", "frontier", MESSAGES, PARAMS, deadline=9e9)
    await Dispatcher(registry).handle(req, "edge", send)
    await registry.close()
    [reply] = sent
    assert isinstance(reply, Reply) and reply.route == "frontier"
    assert reply.cost_usd == pytest.approx(5 / 1000 * 3.0 + 5 / 1000 * 15.0)
    assert fake.requests[-1]["model"] == "frontier-large"
