"""Input a hostile or careless client sends gets a 4xx OpenAI error body, never a 5xx, and no error
message carries the text of an internal exception (a real agent: SmolLM2 on llama.cpp, real HTTP).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from pydantic import SecretStr

from edge_agent.api.errors import ApiError
from edge_agent.app import create_app
from edge_agent.backends.llamacpp import LlamaCppBackend
from edge_agent.serving import BackgroundAgent
from shared.config import EdgeSettings, TenantConfig

KEY = "sk-hostile-1"
AUTH = {"Authorization": f"Bearer {KEY}"}
OK_CHAT: dict[str, Any] = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
# words of exception texts that must never reach a client
INTERNAL = ("Error", "Exception", "Traceback", "codec", "not allowed", "errno", "line ", ".py")


@pytest.fixture(scope="module")
def agent(
    smollm_backend: LlamaCppBackend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackgroundAgent]:
    tenants = [TenantConfig(name="acme", api_key=SecretStr(KEY))]
    settings = EdgeSettings(home=tmp_path_factory.mktemp("edge"), confidence_threshold=0.0, tenants=tenants)
    with BackgroundAgent(create_app(settings, smollm_backend, owns_backend=False)) as running:
        yield running


@pytest.fixture(scope="module")
def http(agent: BackgroundAgent) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=agent.base_url, timeout=120, headers=AUTH) as client:
        yield client


def _client_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and not any(word in error["message"] for word in INTERNAL), error
    return error


def test_deeply_nested_json_is_a_400(http: httpx.Client) -> None:
    for body in (b"[" * 100_000, b'{"model": "auto", "messages": ' + b"[" * 100_000):
        err = _client_error(http.post("/v1/chat/completions", content=body), 400)
        assert err["code"] == "invalid_json"


def test_nesting_past_the_limit_is_a_400_even_when_the_decoder_copes(http: httpx.Client) -> None:
    deep: Any = "x"
    for _ in range(200):
        deep = {"a": deep}
    body = {**OK_CHAT, "metadata": deep}
    err = _client_error(http.post("/v1/chat/completions", json=body), 400)
    assert err["code"] == "invalid_json" and "nested" in err["message"]


@pytest.mark.parametrize("raw", [b"Bearer \xff\xfe\xfd", b"Bearer sk-\xc3\x28", b"\x80\x81"])
def test_non_utf8_authorization_is_a_401(agent: BackgroundAgent, raw: bytes) -> None:
    response = httpx.post(
        f"{agent.base_url}/v1/chat/completions", json=OK_CHAT, headers={b"Authorization": raw}, timeout=60
    )
    err = _client_error(response, 401)
    assert err["code"] == "invalid_api_key" and err["type"] == "authentication_error"


@pytest.mark.parametrize("where", ["content", "system", "stop", "name"])
def test_lone_surrogate_is_a_400(http: httpx.Client, where: str) -> None:
    text = '"abc\\ud800def"'  # a JSON escape of an unpaired UTF-16 surrogate: not Unicode text
    messages = '[{"role": "user", "content": "hi"}]'
    if where == "content":
        messages = f'[{{"role": "user", "content": {text}}}]'
    elif where == "system":
        messages = f'[{{"role": "system", "content": {text}}}, {{"role": "user", "content": "hi"}}]'
    elif where == "name":
        messages = f'[{{"role": "user", "content": "hi", "name": {text}}}]'
    stop = f', "stop": [{text}]' if where == "stop" else ""
    raw = f'{{"model": "auto", "max_tokens": 2, "messages": {messages}{stop}}}'.encode()
    err = _client_error(http.post("/v1/chat/completions", content=raw), 400)
    assert err["code"] == "invalid_value"
    assert err["param"] is not None and err["param"].startswith("messages" if where != "stop" else "stop")


def test_lone_surrogate_in_a_completion_prompt(http: httpx.Client) -> None:
    raw = b'{"model": "auto", "prompt": "x\\udfff", "max_tokens": 2}'
    assert _client_error(http.post("/v1/completions", content=raw), 400)["param"] == "prompt"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", 2**70),
        ("max_completion_tokens", 2**70),
        ("seed", 2**70),
        ("seed", -(2**70)),
        ("seed", 2**63),
        ("n", 2**70),
        ("top_logprobs", 2**70),
    ],
)
def test_integers_out_of_range_are_a_400(http: httpx.Client, field: str, value: int) -> None:
    err = _client_error(http.post("/v1/chat/completions", json={**OK_CHAT, field: value}), 400)
    assert err["param"] == field


def test_integer_range_edges_are_accepted(http: httpx.Client) -> None:
    for seed in (2**63 - 1, -(2**63)):
        assert http.post("/v1/chat/completions", json={**OK_CHAT, "seed": seed}).status_code == 200


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_json_number_literals_are_a_400(http: httpx.Client, literal: bytes) -> None:
    raw = (
        b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "temperature": ' + literal + b"}"
    )
    assert _client_error(http.post("/v1/chat/completions", content=raw), 400)["code"] == "invalid_json"


def test_completion_integers_out_of_range(http: httpx.Client) -> None:
    body = {"model": "auto", "prompt": "Once", "max_tokens": 2**70}
    assert _client_error(http.post("/v1/completions", json=body), 400)["param"] == "max_tokens"


def test_agent_keeps_serving(http: httpx.Client) -> None:
    http.post("/v1/chat/completions", content=b"[" * 100_000)
    assert http.post("/v1/chat/completions", json=OK_CHAT).status_code == 200


def test_server_error_bodies_are_generic(smollm_gguf: Path, tmp_path: Path) -> None:
    """A 503 says that no route answered and names the request, not why the backend failed."""
    backend = LlamaCppBackend(smollm_gguf, n_ctx=256, n_threads=1)
    asyncio.run(backend.close())  # the local model is gone and there is no hub
    settings = EdgeSettings(home=tmp_path, confidence_threshold=0.0)
    with BackgroundAgent(create_app(settings, backend, owns_backend=False)) as running:
        for stream in (False, True):
            response = httpx.post(
                f"{running.base_url}/v1/chat/completions", json={**OK_CHAT, "stream": stream}, timeout=60
            )
            assert response.status_code == 503
            error = response.json()["error"]
            assert error["code"] == "no_route" and error["type"] == "service_unavailable"
            assert "shut down" not in error["message"] and "local model" not in error["message"]
            assert response.headers["x-request-id"] in error["message"]
            assert json.dumps(error).isascii()


def test_empty_completion_prompt_is_a_400(http: httpx.Client) -> None:
    """Found by the OpenAPI fuzzing: an empty prompt gave the local model nothing to read (503)."""
    for prompt in ("", [""]):
        body = {"model": "auto", "prompt": prompt, "max_tokens": 2}
        assert _client_error(http.post("/v1/completions", json=body), 400)["param"] == "prompt"


def test_the_5xx_guard_hides_every_message_and_keeps_headers(
    smollm_backend: LlamaCppBackend, tmp_path: Path
) -> None:
    """Whatever a handler puts in a 5xx (here a file path and an exception's text), the client
    sees a generic message; headers such as ``Retry-After`` still reach it."""

    async def failing(request: web.Request) -> web.Response:
        raise ApiError(503, "ValueError: /srv/models/x.gguf", code="overloaded", headers={"Retry-After": "2"})

    async def crashing(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    app = create_app(EdgeSettings(home=tmp_path), smollm_backend, owns_backend=False)
    app.router.add_get("/v1/failing", failing)
    app.router.add_get("/v1/crashing", crashing)
    with BackgroundAgent(app) as running:
        busy = httpx.get(f"{running.base_url}/v1/failing")
        crashed = httpx.get(f"{running.base_url}/v1/crashing")
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "2"
    assert busy.json()["error"]["code"] == "overloaded"
    assert crashed.status_code == 500
    for response in (busy, crashed):
        message = response.json()["error"]["message"]
        assert response.headers["x-request-id"] in message
        assert "gguf" not in message and "secret" not in message and "Error" not in message
