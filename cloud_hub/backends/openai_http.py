"""Any OpenAI-compatible chat server: a paid frontier API, or a vLLM server on another host.

The base URL and key come from the hub's model registry only — a request can name a model but
never a destination, so an edge cannot turn the hub into a proxy to arbitrary hosts.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from cloud_hub.backends.base import Completion, HubBackendError, StreamItem
from shared.config import HubModelEntry
from shared.wire import ChatMessage, SamplingParams, Usage

# Statuses where the same request may succeed later (rate limits, overload, upstream outages).
_RETRYABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0))


def _error_message(status: int, body: bytes) -> str:
    try:
        err = json.loads(body).get("error")
        detail = err.get("message") if isinstance(err, dict) else str(err)
    except (ValueError, AttributeError):
        detail = body[:200].decode("utf-8", "replace")
    return f"upstream HTTP {status}: {detail}"


class OpenAIHTTPBackend:
    def __init__(
        self, base_url: str, model: str, *, api_key: str | None = None, timeout_s: float = 120.0
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._model = model
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=5.0),
        )

    @classmethod
    async def from_config(cls, entry: HubModelEntry, models_dir: Path) -> OpenAIHTTPBackend:
        if not entry.base_url:
            raise ValueError(f"model {entry.name!r}: the openai_http backend needs base_url")
        key = entry.api_key.get_secret_value() if entry.api_key else None
        return cls(entry.base_url, entry.served_model or entry.name, api_key=key)

    def _payload(
        self, messages: Sequence[ChatMessage], params: SamplingParams, stream: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def generate(self, messages: Sequence[ChatMessage], params: SamplingParams) -> Completion:
        try:
            resp = await self._client.post("chat/completions", json=self._payload(messages, params, False))
        except httpx.HTTPError as exc:
            raise HubBackendError(
                f"upstream unreachable: {type(exc).__name__}: {exc}", retryable=True
            ) from exc
        if resp.status_code >= 400:
            raise HubBackendError(
                _error_message(resp.status_code, resp.content),
                retryable=resp.status_code in _RETRYABLE,
                status=resp.status_code,
            )
        try:
            data = resp.json()
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            finish = choice.get("finish_reason") or "stop"
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise HubBackendError(f"upstream sent an unreadable completion: {exc!r}", retryable=True) from exc
        return Completion(text=text, finish_reason=finish, usage=_usage(data.get("usage")) or Usage())

    async def stream(
        self, messages: Sequence[ChatMessage], params: SamplingParams
    ) -> AsyncIterator[StreamItem]:
        parts: list[str] = []
        finish = "stop"
        usage: Usage | None = None
        payload = self._payload(messages, params, True)
        try:
            async with self._client.stream("POST", "chat/completions", json=payload) as resp:
                if resp.status_code >= 400:
                    body = await resp.aread()
                    raise HubBackendError(
                        _error_message(resp.status_code, body),
                        retryable=resp.status_code in _RETRYABLE,
                        status=resp.status_code,
                    )
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue  # SSE comments, event names and keep-alives
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    if "error" in event:
                        raise HubBackendError(_error_message(resp.status_code, data.encode()), retryable=True)
                    usage = _usage(event.get("usage")) or usage
                    for choice in event.get("choices") or []:
                        finish = choice.get("finish_reason") or finish
                        text = (choice.get("delta") or {}).get("content") or ""
                        if text:
                            parts.append(text)
                            yield text
        except httpx.HTTPError as exc:
            raise HubBackendError(
                f"upstream stream failed: {type(exc).__name__}: {exc}", retryable=True
            ) from exc
        except (ValueError, AttributeError, TypeError) as exc:
            raise HubBackendError(
                f"upstream sent an unreadable stream event: {exc!r}", retryable=True
            ) from exc
        # Servers that ignore include_usage still get billed: one SSE delta is about one token.
        yield Completion(
            text="".join(parts),
            finish_reason=finish,
            usage=usage or Usage(completion_tokens=len(parts)),
        )

    async def close(self) -> None:
        await self._client.aclose()
