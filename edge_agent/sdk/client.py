"""Blocking client (httpx)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from edge_agent.sdk.types import (
    CacheChoice,
    ChatDelta,
    ChatResult,
    Embeddings,
    Health,
    Messages,
    ModelInfo,
    RouteChoice,
    StreamView,
    chat_payload,
    chat_result,
    connection_error,
    embeddings_payload,
    embeddings_result,
    health_result,
    http_options,
    model_info,
    raise_for_error,
    stream_request,
)


class ChatStream(StreamView):
    """Iterate for ``ChatDelta``s; then ``result`` holds route, trace and usage.

    ``route`` is known from the response header before the first delta.
    """

    def __iter__(self) -> Iterator[ChatDelta]:
        try:
            for line in self._response.iter_lines():
                delta = self._state.feed(line)
                if delta is not None:
                    yield delta
                if self._state.done:
                    break
        finally:
            self.close()

    def close(self) -> None:
        self._response.close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class EdgeClient:
    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 120.0) -> None:
        self._http = httpx.Client(**http_options(base_url, api_key, timeout))

    def _request(self, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise connection_error(exc) from exc
        raise_for_error(response, response.content)
        return response, response.json()

    def chat(
        self,
        messages: Messages,
        *,
        model: str = "auto",
        route: RouteChoice | None = None,
        cache: CacheChoice | None = None,
        **options: Any,
    ) -> ChatResult:
        """One answer. ``cache="bypass"``: no cache read or write. ``options``: max_tokens,
        temperature, top_p, stop, seed."""
        payload = chat_payload(messages, model=model, stream=False, route=route, cache=cache, options=options)
        response, body = self._request("POST", "/v1/chat/completions", json=payload)
        return chat_result(body, response.headers.get("x-request-id", ""))

    def stream_chat(
        self,
        messages: Messages,
        *,
        model: str = "auto",
        route: RouteChoice | None = None,
        cache: CacheChoice | None = None,
        **options: Any,
    ) -> ChatStream:
        payload = chat_payload(messages, model=model, stream=True, route=route, cache=cache, options=options)
        try:
            response = self._http.send(stream_request(self._http, payload), stream=True)
        except httpx.HTTPError as exc:
            raise connection_error(exc) from exc
        if response.status_code >= 400:
            body = response.read()
            response.close()
            raise_for_error(response, body)
        return ChatStream(response)

    def models(self) -> list[ModelInfo]:
        _, body = self._request("GET", "/v1/models")
        return [model_info(m) for m in body["data"]]

    def model(self, model_id: str) -> ModelInfo:
        """One model by id; ``EdgeAPIError`` with status 404 for an id the agent does not serve."""
        _, body = self._request("GET", f"/v1/models/{quote(model_id, safe='')}")
        return model_info(body)

    def embed(self, texts: str | Sequence[str], *, model: str = "auto") -> Embeddings:
        """Embeddings of one text or several, from the agent's own embedding model."""
        _, body = self._request("POST", "/v1/embeddings", json=embeddings_payload(texts, model))
        return embeddings_result(body)

    def health(self) -> Health:
        _, body = self._request("GET", "/health")
        return health_result(body)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EdgeClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
