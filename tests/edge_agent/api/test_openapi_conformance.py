"""The edge API against the OpenAI API's own OpenAPI description, with schemathesis: requests
generated from the description for every operation the edge implements, sent to a real agent
(SmolLM2, SQLite caches, ONNX embedder, telemetry), and every answer checked: no server error,
and each response matches the schema the description gives for its status and media type
(streamed chat chunks included).

Two kinds of requests per operation. Negative ones break the description on purpose and are
sent as generated: each must be refused with a 4xx. Positive ones fit the description; most of
what it allows is still refused here by design (any model id, any extra property, tools, images,
batches of prompts), so to reach the answering paths as well four in five are steered: a model
the edge serves, only the fields the edge knows (unknown ones are refused by name, as OpenAI
does), and a completion prompt of the one shape the edge takes (a non-empty string). Everything
else (messages, content parts, sampling values, streaming, stop lists) stays as generated, and
the test requires that some were answered (200), so the success schemas were checked too.
Streams and base64 embeddings are checked by ``Schemas`` (see there why).

Bounded to about a minute: a few dozen examples per operation, and generated ``max_tokens``
capped at a handful (the description allows any integer, and a 135M model writing thousands of
tokens per example would take the test's whole budget on two cores).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import jsonschema_rs
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from schemathesis.specs.openapi.schemas import OpenApiSchema

from edge_agent.api.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from edge_agent.assemble import EMBEDDING_MODEL
from edge_agent.backends.llamacpp import LlamaCppBackend
from shared import paths
from tests.edge_agent.api.full_agent import TENANTS, FullAgent, start_full_agent
from tests.edge_agent.conftest import SMOLLM

if TYPE_CHECKING:
    from schemathesis.specs.openapi.schemas import OpenApiCase as Case

OPERATIONS = ["createChatCompletion", "createCompletion", "listModels", "retrieveModel", "createEmbedding"]
MAX_GENERATED_TOKENS = 4
EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}
# what steering puts in place of a generated model id, per path
SERVED: dict[str, list[str]] = {
    "/chat/completions": ["auto", SMOLLM],
    "/completions": ["auto", SMOLLM],
    "/embeddings": ["auto", EMBEDDING_MODEL],
    "/models/{model}": ["auto", SMOLLM, EMBEDDING_MODEL],
}
KNOWN_FIELDS: dict[str, type[BaseModel]] = {
    "/chat/completions": ChatCompletionRequest,
    "/completions": CompletionRequest,
    "/embeddings": EmbeddingRequest,
}


@pytest.fixture(scope="module")
def full(
    smollm_backend: LlamaCppBackend, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FullAgent]:
    running = start_full_agent(smollm_backend, models_dir, tmp_path_factory.mktemp("openapi"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def description() -> OpenApiSchema:
    spec = paths.specs_dir() / "openai-openapi.yaml"
    if not spec.is_file():
        pytest.fail(f"{spec} is missing: the OpenAI OpenAPI description belongs in {paths.specs_dir()}")
    loaded = schemathesis.openapi.from_path(spec)
    assert isinstance(loaded, OpenApiSchema)
    return loaded


def _bounded(case: Case) -> None:
    """Cap generated token budgets (positive and negative requests alike)."""
    body = case.body
    if not isinstance(body, dict) or case.operation.path not in ("/chat/completions", "/completions"):
        return
    named = False
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_GENERATED_TOKENS:
            body[name] = MAX_GENERATED_TOKENS
        named = named or name in body
    if not named:
        body["max_tokens"] = MAX_GENERATED_TOKENS


def _steered(case: Case, model: str | None, text: str) -> Case:
    """A positive request pointed at a served model (``None``: the request is kept as generated);
    a completion prompt this edge refuses by design (a batch, token ids, nothing) becomes ``text``."""
    path = case.operation.path
    if model is None:
        return case
    if path == "/models/{model}":
        case.path_parameters = {"model": model}
    elif isinstance(case.body, dict) and path in KNOWN_FIELDS:
        known = KNOWN_FIELDS[path].model_fields
        body = {k: v for k, v in case.body.items() if k in known}
        body["model"] = model
        prompt = body.get("prompt")
        if path == "/completions" and not (isinstance(prompt, str) and prompt):
            body["prompt"] = text
        case.body = body
    return case


def _strategy(operation: Any, mode: GenerationMode) -> st.SearchStrategy[Case]:
    cases: st.SearchStrategy[Case] = operation.as_strategy(generation_mode=mode)
    served = SERVED.get(operation.path)
    if mode is GenerationMode.NEGATIVE or served is None:
        return cases
    # one in five keeps its generated model id, so unknown models are exercised too
    models = st.sampled_from([*served, *served, None])
    return st.tuples(cases, models, st.text(min_size=1, max_size=40)).map(lambda drawn: _steered(*drawn))


class Schemas:
    """Validators for what schemathesis cannot check against this description by itself.

    Streams: schemathesis applies an event-stream schema to each event's envelope (``data``, ``event``),
    while the OpenAI description gives the schema of the JSON inside ``data``, so streams are
    checked here instead: chat chunks against ``CreateChatCompletionStreamResponse``, in-band
    errors against ``ErrorResponse``. Legacy completion streams are not described at all; their
    chunks are checked against ``CreateCompletionResponse``, whose ``finish_reason`` is non-null,
    so a chunk before the last is checked as if it had finished.

    Base64 embeddings: the description types ``embedding`` as a list of floats whatever the
    ``encoding_format``; a base64 answer is checked as the list it decodes to (what the
    ``openai`` client does with it).
    """

    def __init__(self, description: OpenApiSchema) -> None:
        def validator(operation_id: str, status: int, media_type: str) -> jsonschema_rs.Validator:
            responses = description.find_operation_by_id(operation_id).responses
            schema = responses.find_by_status_code(status).get_schema(media_type).schema
            return jsonschema_rs.validator_for(schema)

        self.chat = validator("createChatCompletion", 200, "text/event-stream")
        self.text = validator("createCompletion", 200, "application/json")
        self.error = validator("createChatCompletion", 429, "application/json")
        self.embeddings = validator("createEmbedding", 200, "application/json")

    def check_base64_embeddings(self, content: bytes) -> None:
        body = json.loads(content)
        for item in body["data"]:
            item["embedding"] = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4").tolist()
        self.embeddings.validate(body)

    def check(self, path: str, content: bytes) -> int:
        """Validate every event; returns how many chunks there were before ``[DONE]``."""
        events = [line[6:] for line in content.decode().splitlines() if line.startswith("data: ")]
        assert events and events[-1] == "[DONE]", content[-200:]
        for data in events[:-1]:
            event = json.loads(data)
            if "error" in event:
                self.error.validate(event)
            elif path == "/chat/completions":
                self.chat.validate(event)
            else:
                finished = [dict(c, finish_reason=c["finish_reason"] or "stop") for c in event["choices"]]
                self.text.validate(dict(event, choices=finished))
        return len(events) - 1


@pytest.fixture(scope="module")
def schemas(description: OpenApiSchema) -> Schemas:
    return Schemas(description)


def _is_stream(response: Any) -> bool:
    return any(v.startswith("text/event-stream") for v in response.headers.get("content-type", []))


def _is_base64_embedding(case: Case, status: int) -> bool:
    body = case.body
    is_base64 = isinstance(body, dict) and body.get("encoding_format") == "base64"
    return case.operation.path == "/embeddings" and status == 200 and is_base64


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("operation_id", OPERATIONS)
def test_edge_api_matches_the_openai_description(
    description: OpenApiSchema,
    schemas: Schemas,
    full: FullAgent,
    operation_id: str,
    mode: GenerationMode,
) -> None:
    operation = description.find_operation_by_id(operation_id)
    headers = {"Authorization": f"Bearer {TENANTS['acme']}"}
    statuses: list[int] = []

    @given(case=_strategy(operation, mode))
    @settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Case) -> None:
        _bounded(case)
        response = case.call(base_url=f"{full.base_url}/v1", headers=headers, timeout=120)
        statuses.append(response.status_code)
        if _is_stream(response):
            case.validate_response(response, checks=[not_a_server_error])
            schemas.check(operation.path, response.content)
        elif _is_base64_embedding(case, response.status_code):
            schemas.check_base64_embeddings(response.content)
        else:
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    check()
    assert statuses and all(status < 500 for status in statuses)
    if mode is GenerationMode.POSITIVE:
        # the answering paths were reached, so their response schemas were checked too
        assert 200 in statuses, statuses


@pytest.mark.parametrize("path", ["/chat/completions", "/completions"])
def test_streams_match_the_description(full: FullAgent, schemas: Schemas, path: str) -> None:
    """Generated requests rarely stream successfully; these do, first answered, then from the cache."""
    headers = {"Authorization": f"Bearer {TENANTS['acme']}"}
    body: dict[str, Any] = {"model": "auto", "max_tokens": 4, "temperature": 0, "stream": True}
    if path == "/chat/completions":
        body["messages"] = [{"role": "user", "content": "Name a colour."}]
    else:
        body["prompt"] = "Once upon a time"
    for include_usage in (False, True, True):
        body["stream_options"] = {"include_usage": include_usage}
        response = httpx.post(f"{full.base_url}/v1{path}", json=body, headers=headers, timeout=120)
        assert response.status_code == 200 and _is_stream_headers(response.headers)
        assert schemas.check(path, response.content) >= 2
        full.agent.drain()  # so the next ask of the same question is a cache hit (chat only)


def _is_stream_headers(headers: httpx.Headers) -> bool:
    return headers["content-type"].startswith("text/event-stream")
