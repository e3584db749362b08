"""The SDK (sync, async, streaming) against a real agent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edge_agent.app import create_app
from edge_agent.backends.llamacpp import LlamaCppBackend
from edge_agent.sdk import AsyncEdgeClient, EdgeAPIError, EdgeClient
from edge_agent.sdk.types import chat_payload
from edge_agent.serving import BackgroundAgent
from shared.config import EdgeSettings
from shared.taxonomy import Route
from shared.wire import TraceStep
from tests.edge_agent.conftest import SMOLLM

QUESTION = "Name a primary colour."


@pytest.fixture(scope="module")
def agent(
    smollm_backend: LlamaCppBackend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackgroundAgent]:
    settings = EdgeSettings(home=tmp_path_factory.mktemp("edge"), confidence_threshold=0.0, draft_tokens=4)
    with BackgroundAgent(create_app(settings, smollm_backend, owns_backend=False)) as running:
        yield running


def test_sync_chat_and_stream_agree(agent: BackgroundAgent) -> None:
    with EdgeClient(agent.base_url) as client:
        result = client.chat(QUESTION, max_tokens=10, temperature=0)
        assert result.route == Route.EDGE_LOCAL and result.model == SMOLLM
        assert result.text and result.usage.completion_tokens <= 10
        assert result.trace[-1].stage == "edge_local" and result.trace[-1].decision == "answer"
        assert result.confidence is not None and 0 < result.confidence <= 1
        assert result.request_id.startswith("req-")
        with client.stream_chat(QUESTION, max_tokens=10, temperature=0) as stream:
            assert stream.route == "edge_local"  # from the header, before any text
            text = "".join(d.text for d in stream)
        assert text == result.text
        assert stream.result.text == text
        assert stream.result.usage == result.usage
        assert stream.result.trace[-1].stage == "edge_local"


def test_sync_models_health_and_errors(agent: BackgroundAgent) -> None:
    with EdgeClient(agent.base_url) as client:
        assert SMOLLM in [m.id for m in client.models()]
        health = client.health()
        assert health.status == "ok" and health.hub == "not_configured"
        with pytest.raises(EdgeAPIError) as err:
            client.chat(QUESTION, temperature=5)
        assert err.value.status == 400 and err.value.type == "invalid_request_error"
        assert err.value.param == "temperature"
        with pytest.raises(EdgeAPIError) as missing:
            client.stream_chat(QUESTION, model="no-such-model")
        assert missing.value.status == 404


def test_forced_hub_route_is_reported_as_fallback(agent: BackgroundAgent) -> None:
    with EdgeClient(agent.base_url) as client:
        result = client.chat(QUESTION, route="hub", max_tokens=4)
    assert result.fallback and result.route == "edge_local"
    assert any(s.stage == "hub" and s.decision == "fallback" for s in result.trace)


def test_unreachable_agent_is_a_typed_error() -> None:
    with EdgeClient("http://127.0.0.1:9", timeout=2) as client, pytest.raises(EdgeAPIError) as err:
        client.health()
    assert err.value.status == 0 and err.value.type == "connection_error"


async def test_async_chat_stream_models(agent: BackgroundAgent) -> None:
    async with AsyncEdgeClient(agent.base_url) as client:
        result = await client.chat(QUESTION, max_tokens=8, temperature=0)
        assert result.route == "edge_local" and result.text
        stream = await client.stream_chat(QUESTION, max_tokens=8, temperature=0)
        async with stream:
            text = "".join([d.text async for d in stream])
        assert text == result.text
        assert stream.result.route == "edge_local"
        assert stream.result.usage.completion_tokens == result.usage.completion_tokens
        assert "auto" in [m.id for m in await client.models()]
        with pytest.raises(EdgeAPIError) as err:
            await client.chat([{"role": "user"}])
        assert err.value.status == 400


def _bypassed(trace: tuple[TraceStep, ...]) -> bool:
    first = trace[0]
    return (first.stage, first.decision, first.reason) == (
        "cache",
        "bypass",
        "caches bypassed by the request body",
    )


async def test_cache_bypass_option(agent: BackgroundAgent) -> None:
    assert chat_payload("q", model="m", stream=False, route="hub", cache="bypass", options={})[
        "edgeroute"
    ] == {
        "route": "hub",
        "cache": "bypass",
    }
    with EdgeClient(agent.base_url) as client:
        assert _bypassed(client.chat(QUESTION, cache="bypass", max_tokens=4).trace)
        assert not _bypassed(client.chat(QUESTION, cache="default", max_tokens=4).trace)
        with client.stream_chat(QUESTION, cache="bypass", max_tokens=4) as stream:
            assert "".join(d.text for d in stream)
        assert _bypassed(stream.result.trace)
    async with AsyncEdgeClient(agent.base_url) as aclient:
        assert _bypassed((await aclient.chat(QUESTION, cache="bypass", max_tokens=4)).trace)
        astream = await aclient.stream_chat(QUESTION, cache="bypass", max_tokens=4)
        async with astream:
            assert "".join([d.text async for d in astream])
        assert _bypassed(astream.result.trace)
