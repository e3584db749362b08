"""The OpenAI surface a client expects, through the official ``openai`` client against a real agent
(SmolLM2, SQLite caches, ONNX embedder, telemetry spool): model retrieval, the current request
fields, one model per stream, usage on cache hits, ``Allow`` on 405s, end users in telemetry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from edge_agent.assemble import EMBEDDING_MODEL
from edge_agent.backends.llamacpp import LlamaCppBackend
from shared.telemetry import identity_hash
from tests.edge_agent.api.full_agent import TENANTS, FullAgent, start_full_agent
from tests.edge_agent.conftest import SMOLLM


@pytest.fixture(scope="module")
def full(
    smollm_backend: LlamaCppBackend, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FullAgent]:
    running = start_full_agent(smollm_backend, models_dir, tmp_path_factory.mktemp("surface"))
    yield running
    running.stop()


def _client(full: FullAgent, tenant: str = "acme") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{full.base_url}/v1", api_key=TENANTS[tenant], max_retries=0, timeout=120)


def _ask(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


def test_models_retrieve(full: FullAgent) -> None:
    client = _client(full)
    listed = {m.id: m for m in client.models.list()}
    assert {SMOLLM, "auto", EMBEDDING_MODEL} <= set(listed)
    for model_id in (SMOLLM, "auto", EMBEDDING_MODEL):
        model = client.models.retrieve(model_id)
        assert model.id == model_id and model.object == "model"
        assert model.owned_by == listed[model_id].owned_by and model.created == listed[model_id].created
    assert client.models.retrieve("edgeroute").id == "edgeroute"  # the router alias chat accepts
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("gpt-17")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{full.base_url}/v1", api_key="sk-wrong", max_retries=0).models.retrieve(
            SMOLLM
        )


def test_current_request_fields_are_accepted(full: FullAgent) -> None:
    completion = _client(full).chat.completions.create(
        model="auto",
        messages=_ask("Say hello."),
        max_completion_tokens=4,
        modalities=["text"],
        prompt_cache_key="greeting",
        prompt_cache_retention="24h",
        safety_identifier="user-42",
        reasoning_effort="low",
        verbosity="low",
        audio=None,
        prediction={"type": "content", "content": "Hello"},
        web_search_options={"search_context_size": "low"},
        service_tier="auto",
        store=False,
        metadata={"purpose": "test"},
        parallel_tool_calls=False,
    )
    assert completion.choices[0].message.content is not None
    stream = _client(full).chat.completions.create(
        model="auto",
        messages=_ask("Say hello."),
        max_completion_tokens=4,
        stream=True,
        stream_options={"include_usage": True, "include_obfuscation": False},
    )
    assert any(chunk.usage is not None for chunk in stream)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("modalities", ["text", "audio"]),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("moderation", {"model": "omni-moderation-latest"}),
        ("reasoning_effort", "extreme"),
        ("safety_identifier", "x" * 65),
    ],
)
def test_fields_that_cannot_be_honoured_are_refused_by_name(full: FullAgent, field: str, value: Any) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        _client(full).chat.completions.create(
            model="auto", messages=_ask("hi"), max_tokens=2, extra_body={field: value}
        )
    assert isinstance(bad.value.body, dict) and bad.value.body["param"] == field


def test_assistant_turns_may_omit_content_user_turns_may_not(full: FullAgent) -> None:
    auth = {"Authorization": f"Bearer {TENANTS['acme']}"}
    url = f"{full.base_url}/v1/chat/completions"
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant"}, {"role": "user", "content": "go on"}]
    body = {"model": "auto", "max_tokens": 2, "messages": turns}
    assert httpx.post(url, json=body, headers=auth, timeout=120).status_code == 200
    body["messages"] = [{"role": "user"}]
    response = httpx.post(url, json=body, headers=auth, timeout=120)
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages.0.content"


def test_405_names_the_allowed_methods(full: FullAgent) -> None:
    for method, path, allowed in (
        ("GET", "/v1/chat/completions", {"POST"}),
        ("DELETE", "/v1/models", {"GET", "HEAD"}),
        ("PUT", "/v1/embeddings", {"POST"}),
    ):
        auth = {"Authorization": f"Bearer {TENANTS['acme']}"}
        response = httpx.request(method, f"{full.base_url}{path}", headers=auth)
        assert response.status_code == 405
        assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed
        assert response.json()["error"]["code"] == "method_not_allowed"


def _stream(full: FullAgent, messages: list[ChatCompletionMessageParam]) -> tuple[list[Any], str]:
    stream = _client(full).chat.completions.create(
        model="auto",
        messages=messages,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return chunks, text


def test_a_local_stream_names_one_model_throughout(full: FullAgent) -> None:
    chunks, _ = _stream(full, _ask("Name a fruit."))
    assert len(chunks) >= 3
    assert {c.model for c in chunks} == {SMOLLM}  # not "auto" first and the local model last


def test_cache_hits_report_usage_streamed_or_not(full: FullAgent) -> None:
    client = _client(full)
    question = _ask("What colour is the sky on a clear day?")
    fresh = client.chat.completions.create(model="auto", messages=question, max_tokens=8, temperature=0)
    full.agent.drain()  # the answer is stored after it is sent
    hit = client.chat.completions.create(model="auto", messages=question, max_tokens=8, temperature=0)
    assert (hit.model_extra or {})["edgeroute"]["route"] == "exact_cache"
    assert fresh.usage is not None and hit.usage is not None
    assert fresh.usage.prompt_tokens_details is not None
    assert fresh.usage.prompt_tokens_details.cached_tokens == 0
    # the same prompt and the same text, counted by the same tokenizer, all of the prompt cached
    assert hit.usage.prompt_tokens == fresh.usage.prompt_tokens > 0
    assert hit.usage.completion_tokens == fresh.usage.completion_tokens > 0
    assert hit.usage.prompt_tokens_details is not None
    assert hit.usage.prompt_tokens_details.cached_tokens == hit.usage.prompt_tokens
    chunks, text = _stream(full, question)
    assert text == hit.choices[0].message.content
    assert {c.model for c in chunks} == {hit.model}
    [usage] = [c.usage for c in chunks if c.usage is not None]
    assert usage.model_dump() == hit.usage.model_dump()


def test_end_users_reach_telemetry_hashed_per_tenant(full: FullAgent) -> None:
    full.events()  # forget what earlier tests spooled
    question = _ask("How many legs does a spider have?")
    asks = [("acme", {"user": "alice"}), ("acme", {"user": "bob"}), ("acme", {"safety_identifier": "alice"})]
    asks.append(("globex", {"user": "alice"}))
    for tenant, who in asks:
        # each ask is answered, none comes from the cache
        _client(full, tenant).chat.completions.create(
            model="auto",
            messages=question,
            max_tokens=4,
            extra_headers={"x-edgeroute-cache": "bypass"},
            extra_body=who,
        )
    events = [e for e in full.events() if e.kind == "request"]
    assert len(events) == 4
    alice, bob, alice_again, other_alice = (e.user for e in events)
    assert alice == identity_hash("alice", salt="acme") and alice_again == alice
    assert len({alice, bob, other_alice}) == 3  # the same id in another tenant is another person
    raw = json.dumps([e.to_attributes() for e in events])
    assert "alice" not in raw and "bob" not in raw
    # the re-ask is a regeneration of alice's own answer; bob's and globex's first asks are not
    assert [e.regeneration for e in events] == [False, False, True, False]
    assert events[2].regenerates == events[0].response_id


def test_feedback_users_are_hashed_the_same_way(full: FullAgent) -> None:
    full.events()
    response = httpx.post(
        f"{full.base_url}/v1/feedback",
        json={"response_id": "req-1", "thumbs": "up", "user": "alice"},
        headers={"Authorization": f"Bearer {TENANTS['acme']}"},
    )
    assert response.status_code == 200
    [event] = full.events()
    assert event.kind == "feedback" and event.user == identity_hash("alice", salt="acme")
