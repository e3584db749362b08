"""Typed results and errors of the SDK, and the request/response translation both clients share."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import msgspec

from shared.wire import TraceStep, Usage

Messages = str | Sequence[Mapping[str, str]]
RouteChoice = Literal["edge_local", "hub"]
CacheChoice = Literal["bypass", "default"]  # "bypass": the request neither reads nor feeds a cache


class EdgeAPIError(Exception):
    """An error answer from the agent (or a transport failure, with ``status`` 0)."""

    def __init__(
        self, status: int, type: str, message: str, *, param: str | None = None, code: str | None = None
    ):
        super().__init__(f"{status} {type}: {message}")
        self.status = status
        self.type = type
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True)
class ChatResult:
    text: str
    route: str
    model: str
    finish_reason: str
    usage: Usage
    trace: tuple[TraceStep, ...]
    confidence: float | None
    cost_usd: float
    fallback: bool
    request_id: str
    cached_tokens: int = 0  # prompt tokens served from a cache (all of them on a cache hit)


@dataclass(frozen=True)
class ChatDelta:
    text: str


@dataclass(frozen=True)
class ModelInfo:
    id: str
    owned_by: str


@dataclass(frozen=True)
class Embeddings:
    """One unit-length vector per input text, in input order."""

    vectors: list[list[float]]
    model: str
    prompt_tokens: int


def embeddings_payload(texts: str | Sequence[str], model: str) -> dict[str, Any]:
    return {"model": model, "input": texts if isinstance(texts, str) else list(texts)}


def embeddings_result(body: Mapping[str, Any]) -> Embeddings:
    rows = sorted(body["data"], key=lambda row: int(row["index"]))
    vectors = [[float(x) for x in row["embedding"]] for row in rows]
    return Embeddings(vectors, str(body.get("model", "")), int(body["usage"]["prompt_tokens"]))


def model_info(body: Mapping[str, Any]) -> ModelInfo:
    return ModelInfo(str(body["id"]), str(body.get("owned_by", "")))


@dataclass(frozen=True)
class Health:
    status: str
    model: str
    hub: str
    extra: dict[str, Any] = field(default_factory=dict)


def chat_payload(
    messages: Messages,
    *,
    model: str,
    stream: bool,
    route: RouteChoice | None,
    options: Mapping[str, Any],
    cache: CacheChoice | None = None,
) -> dict[str, Any]:
    msgs = (
        [{"role": "user", "content": messages}] if isinstance(messages, str) else [dict(m) for m in messages]
    )
    payload: dict[str, Any] = {"model": model, "messages": msgs, "stream": stream}
    payload.update({k: v for k, v in options.items() if v is not None})
    if stream:
        payload["stream_options"] = {"include_usage": True}
    override: dict[str, str] = {}
    if route is not None:
        override["route"] = route
    if cache is not None:
        override["cache"] = cache
    if override:
        payload["edgeroute"] = override
    return payload


def raise_for_error(response: httpx.Response, body: bytes) -> None:
    if response.status_code < 400:
        return
    try:
        error = json.loads(body)["error"]
        raise EdgeAPIError(
            response.status_code,
            str(error.get("type", "api_error")),
            str(error.get("message", "")),
            param=error.get("param"),
            code=error.get("code"),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        raise EdgeAPIError(response.status_code, "api_error", body.decode(errors="replace")[:500]) from None


def _usage(raw: Any) -> Usage:
    raw = raw or {}
    return Usage(int(raw.get("prompt_tokens", 0)), int(raw.get("completion_tokens", 0)))


def result_from(
    edgeroute: Mapping[str, Any], *, text: str, model: str, finish: str, usage: Any, request_id: str
) -> ChatResult:
    trace = tuple(msgspec.convert(step, TraceStep) for step in edgeroute.get("trace", []))
    details = (usage or {}).get("prompt_tokens_details") or {}
    return ChatResult(
        text=text,
        route=str(edgeroute.get("route", "")),
        model=model,
        finish_reason=finish,
        usage=_usage(usage),
        trace=trace,
        confidence=edgeroute.get("confidence"),
        cost_usd=float(edgeroute.get("cost_usd", 0.0)),
        fallback=bool(edgeroute.get("fallback", False)),
        request_id=request_id,
        cached_tokens=int(details.get("cached_tokens", 0)),
    )


def chat_result(body: Mapping[str, Any], request_id: str) -> ChatResult:
    choice = body["choices"][0]
    return result_from(
        body.get("edgeroute", {}),
        text=choice["message"].get("content") or "",
        model=str(body.get("model", "")),
        finish=str(choice.get("finish_reason") or ""),
        usage=body.get("usage"),
        request_id=request_id,
    )


class StreamState:
    """Turns SSE ``data:`` lines into deltas and, at the end, one ``ChatResult``."""

    def __init__(self, route: str, request_id: str) -> None:
        self.route = route
        self.request_id = request_id
        self.pieces: list[str] = []
        self.model = ""
        self.finish = ""
        self.usage: Any = None
        self.result: ChatResult | None = None
        self.done = False

    def feed(self, line: str) -> ChatDelta | None:
        if not line.startswith("data:"):
            return None
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return None
        chunk = json.loads(data)
        if "error" in chunk:
            err = chunk["error"]
            raise EdgeAPIError(503, str(err.get("type")), str(err.get("message")), code=err.get("code"))
        self.model = chunk.get("model", self.model)
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        delta: ChatDelta | None = None
        for choice in chunk.get("choices", []):
            self.finish = choice.get("finish_reason") or self.finish
            text = (choice.get("delta") or {}).get("content")
            if text:
                self.pieces.append(text)
                delta = ChatDelta(text)
        if "edgeroute" in chunk:
            self.route = chunk["edgeroute"].get("route", self.route)
            self.result = result_from(
                chunk["edgeroute"],
                text="".join(self.pieces),
                model=self.model,
                finish=self.finish,
                usage=self.usage,
                request_id=self.request_id,
            )
        return delta

    def finish_stream(self) -> ChatResult:
        if self.result is None:
            raise EdgeAPIError(0, "stream_error", "the stream ended without its final chunk")
        return self.result


class StreamView:
    """What both clients' chat streams show besides their deltas: the route, known from the
    response header before the first delta, and at the end the whole ``ChatResult``."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._state = StreamState(
            response.headers.get("x-edgeroute-route", ""), response.headers.get("x-request-id", "")
        )

    @property
    def route(self) -> str:
        return self._state.route

    @property
    def result(self) -> ChatResult:
        return self._state.finish_stream()


def http_options(base_url: str, api_key: str | None, timeout: float) -> dict[str, Any]:
    """The arguments of both clients' ``httpx`` client."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return {"base_url": base_url.rstrip("/"), "headers": headers, "timeout": timeout}


def stream_request(http: httpx.Client | httpx.AsyncClient, payload: Mapping[str, Any]) -> httpx.Request:
    """The streaming chat request, built by hand so that it can be sent with ``stream=True``."""
    request = http.build_request("POST", "/v1/chat/completions", content=json.dumps(payload))
    request.headers["Content-Type"] = "application/json"
    return request


def connection_error(exc: httpx.HTTPError) -> EdgeAPIError:
    return EdgeAPIError(0, "connection_error", str(exc))


def health_result(body: Mapping[str, Any]) -> Health:
    rest = {k: v for k, v in body.items() if k not in ("status", "model", "hub")}
    return Health(body["status"], body.get("model", ""), body.get("hub", ""), rest)
