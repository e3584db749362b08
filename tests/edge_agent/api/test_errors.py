"""Bad HTTP input gets an OpenAI error body with the right status, and the agent keeps serving."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from pydantic import SecretStr

from edge_agent.api.errors import ApiError, parse_json_object
from edge_agent.app import create_app
from edge_agent.backends.llamacpp import LlamaCppBackend
from edge_agent.serving import BackgroundAgent
from shared.config import EdgeSettings, TenantConfig

MAX_BODY = 64 * 1024
OK_CHAT: dict[str, Any] = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


@pytest.fixture(scope="module")
def agent(
    smollm_backend: LlamaCppBackend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackgroundAgent]:
    settings = EdgeSettings(
        home=tmp_path_factory.mktemp("edge"), confidence_threshold=0.0, max_body_bytes=MAX_BODY
    )
    with BackgroundAgent(create_app(settings, smollm_backend, owns_backend=False)) as running:
        yield running


@pytest.fixture(scope="module")
def http(agent: BackgroundAgent) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=agent.base_url, timeout=120) as client:
        yield client


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["x-request-id"]
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in error["message"]
    return error


def _with(**changes: Any) -> dict[str, Any]:
    return {**OK_CHAT, **changes}


def test_invalid_json(http: httpx.Client) -> None:
    err = _error(http.post("/v1/chat/completions", content=b'{"model": "auto",'), 400)
    assert err["type"] == "invalid_request_error" and err["code"] == "invalid_json"


def test_body_must_be_an_object(http: httpx.Client) -> None:
    _error(http.post("/v1/chat/completions", json=[OK_CHAT]), 400)


def test_missing_messages(http: httpx.Client) -> None:
    err = _error(http.post("/v1/chat/completions", json={"model": "auto"}), 400)
    assert err["param"] == "messages" and "required" in err["message"]


def test_empty_messages(http: httpx.Client) -> None:
    _error(http.post("/v1/chat/completions", json=_with(messages=[])), 400)


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"messages": "hi"}, "messages"),
        ({"max_tokens": "2"}, "max_tokens"),
        ({"temperature": "0.5"}, "temperature"),
        ({"stream": "yes"}, "stream"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": 7}]}, "messages.0.content"),
    ],
)
def test_wrong_types(http: httpx.Client, changes: dict[str, Any], param: str) -> None:
    err = _error(http.post("/v1/chat/completions", json=_with(**changes)), 400)
    assert err["param"] == param


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"temperature": 5}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"temprature": 0.2}, "temprature"),
    ],
)
def test_bad_parameters(http: httpx.Client, changes: dict[str, Any], param: str) -> None:
    err = _error(http.post("/v1/chat/completions", json=_with(**changes)), 400)
    assert err["param"] == param


def test_image_content_is_refused_by_name(http: httpx.Client) -> None:
    parts = [{"type": "image_url", "image_url": {"url": "data:,"}}]
    err = _error(
        http.post("/v1/chat/completions", json=_with(messages=[{"role": "user", "content": parts}])), 400
    )
    assert "image_url" in err["message"]


def test_text_content_parts_are_accepted(http: httpx.Client) -> None:
    parts = [{"type": "text", "text": "Say "}, {"type": "text", "text": "hi"}]
    response = http.post("/v1/chat/completions", json=_with(messages=[{"role": "user", "content": parts}]))
    assert response.status_code == 200


def test_unknown_model(http: httpx.Client) -> None:
    err = _error(http.post("/v1/chat/completions", json=_with(model="gpt-17")), 404)
    assert err["code"] == "model_not_found" and err["param"] == "model"


def test_bad_route_override_header(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json=OK_CHAT, headers={"x-edgeroute-route": "frontier"})
    _error(response, 400)


def test_oversized_body(http: httpx.Client) -> None:
    big = _with(messages=[{"role": "user", "content": "x" * (MAX_BODY * 2)}])
    err = _error(http.post("/v1/chat/completions", content=json.dumps(big).encode()), 413)
    assert err["code"] == "request_too_large"


def test_wrong_method_and_unknown_path(http: httpx.Client) -> None:
    assert _error(http.get("/v1/chat/completions"), 405)["code"] == "method_not_allowed"
    assert _error(http.post("/v1/nothing", json={}), 404)["code"] == "unknown_url"


def test_context_overflow_is_a_client_error(http: httpx.Client) -> None:
    long = _with(messages=[{"role": "user", "content": "word " * 3000}])
    assert _error(http.post("/v1/chat/completions", json=long), 400)["code"] == "context_length_exceeded"


def test_completions_validation(http: httpx.Client) -> None:
    assert _error(http.post("/v1/completions", json={"model": "auto"}), 400)["param"] == "prompt"
    assert _error(http.post("/v1/completions", json={"model": "auto", "prompt": "a", "echo": True}), 400)


def test_still_serving_after_bad_requests(http: httpx.Client) -> None:
    for _ in range(3):
        http.post("/v1/chat/completions", content=b"nope")
    assert http.get("/health").json()["status"] == "ok"
    assert http.post("/v1/chat/completions", json=OK_CHAT).status_code == 200
    metrics = http.get("/metrics").text
    assert 'edgeroute_http_requests_total{endpoint="/v1/chat/completions",status="400"}' in metrics


def test_openai_client_sees_typed_errors(agent: BackgroundAgent) -> None:
    client = openai.OpenAI(base_url=f"{agent.base_url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="auto", messages=OK_CHAT["messages"], temperature=5)
    assert bad.value.status_code == 400
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-17", messages=OK_CHAT["messages"])


def test_tenants_need_a_valid_key(
    smollm_backend: LlamaCppBackend, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tenants = [TenantConfig(name="acme", api_key=SecretStr("sk-acme-1"))]
    settings = EdgeSettings(home=tmp_path_factory.mktemp("edge"), tenants=tenants, confidence_threshold=0.0)
    with BackgroundAgent(create_app(settings, smollm_backend, owns_backend=False)) as running:
        with httpx.Client(base_url=running.base_url, timeout=120) as http:
            assert _error(http.post("/v1/chat/completions", json=OK_CHAT), 401)["code"] == "invalid_api_key"
            wrong = {"Authorization": "Bearer sk-other"}
            assert _error(http.get("/v1/models", headers=wrong), 401)["type"] == "authentication_error"
            assert http.get("/health").status_code == 200  # probes need no key
        client = openai.OpenAI(base_url=f"{running.base_url}/v1", api_key="sk-acme-1", max_retries=0)
        assert client.chat.completions.create(**OK_CHAT).choices[0].message.content is not None


def test_no_route_left_is_503(smollm_gguf: Path, tmp_path: Path) -> None:
    backend = LlamaCppBackend(smollm_gguf, n_ctx=256, n_threads=1)
    asyncio.run(backend.close())  # the local model is gone and there is no hub
    settings = EdgeSettings(home=tmp_path, confidence_threshold=0.0)
    with BackgroundAgent(create_app(settings, backend, owns_backend=False)) as running:
        response = httpx.post(f"{running.base_url}/v1/chat/completions", json=OK_CHAT, timeout=60)
        err = _error(response, 503)
        assert err["code"] == "no_route" and err["type"] == "service_unavailable"
        assert httpx.get(f"{running.base_url}/health").status_code == 200


def test_feedback_without_telemetry_is_404(http: httpx.Client) -> None:
    err = _error(http.post("/v1/feedback", json={"response_id": "x", "thumbs": "up"}), 404)
    assert err["code"] == "feedback_disabled"


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": "x\\ud800"}',  # an escaped lone surrogate, lower and upper hex
        b'{"a": "x\\uDFFF"}',
        b'{"\\udbff": 1}',  # in a key
        b'{"a": "\xed\xa0\x80"}',  # the surrogate's own UTF-8 bytes, which the decoder lets through
        '{"a": "\\ud800"}'.encode("utf-16"),  # a body the decoder reads as UTF-16
        '{"a": "\\ud800"}'.encode("utf-32-le"),
        b'{"a": ' + b"[" * 70 + b"]" * 70 + b"}",
    ],
)
def test_the_byte_scan_never_waves_through_what_the_walk_refuses(raw: bytes) -> None:
    with pytest.raises(ApiError) as caught:
        parse_json_object(raw)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b'{"a": "\\\\ud800"}', "\\ud800"),  # an escaped backslash: six plain characters
        ('{"a": "한"}'.encode(), "한"),  # Hangul shares the surrogates' lead byte
        ('{"a": "\\ud83d\\ude00"}'.encode("utf-16"), "\U0001f600"),  # a paired surrogate is one character
        (b'{"a": ' + b"[" * 30 + b"]" * 30 + b"}", _nested(30)),
    ],
)
def test_bodies_that_look_suspect_to_the_scan_are_still_accepted(raw: bytes, value: Any) -> None:
    assert parse_json_object(raw) == {"a": value}
