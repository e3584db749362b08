"""llama.cpp backend: a GGUF model on the hub's CPU, the fallback when no vLLM build fits.

llama.cpp calls block and a ``Llama`` object is not re-entrant, so calls run one at a time in a
worker thread; the hub's socket loop keeps serving heartbeats and other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from cloud_hub.backends.base import BackendError, Completion, StreamItem
from shared.wire import ChatMessage, SamplingParams, Usage

_DONE = object()


def find_gguf(path_or_dir: Path) -> Path:
    """``path_or_dir`` itself if it is a file, else the single ``*.gguf`` inside it."""
    if path_or_dir.is_file():
        return path_or_dir
    found = sorted(path_or_dir.glob("*.gguf")) if path_or_dir.is_dir() else []
    if not found:
        raise FileNotFoundError(f"no GGUF model at {path_or_dir}")
    return found[0]


class LlamaCppBackend:
    def __init__(self, model_path: Path, *, n_ctx: int = 4096, n_threads: int = 2) -> None:
        from llama_cpp import Llama

        self._llm = Llama(
            model_path=str(find_gguf(model_path)), n_ctx=n_ctx, n_threads=n_threads, verbose=False
        )
        self._lock = asyncio.Lock()
        self._closed = False

    def _kwargs(self, messages: Sequence[ChatMessage], params: SamplingParams) -> dict[str, Any]:
        return {
            "messages": [
                {"role": "system" if m.role == "developer" else m.role, "content": m.content}
                for m in messages
            ],
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stop": list(params.stop) or None,
            "seed": params.seed,
        }

    def _check(self) -> None:
        if self._closed:
            raise BackendError("llama.cpp backend is closed", retryable=True)

    async def generate(self, messages: Sequence[ChatMessage], params: SamplingParams) -> Completion:
        self._check()
        async with self._lock:
            try:
                res: Any = await asyncio.to_thread(
                    self._llm.create_chat_completion, **self._kwargs(messages, params)
                )
            except ValueError as exc:  # context overflow and similar request errors
                raise BackendError(f"llama.cpp rejected the request: {exc}", retryable=False) from exc
        choice = res["choices"][0]
        usage = res.get("usage") or {}
        return Completion(
            text=choice["message"].get("content") or "",
            finish_reason=choice.get("finish_reason") or "stop",
            usage=Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)),
        )

    def _produce(self, kwargs: dict[str, Any], put: Any, stop: threading.Event) -> None:
        try:
            chunks: Iterator[Any] = cast(
                Iterator[Any], self._llm.create_chat_completion(stream=True, **kwargs)
            )
            for chunk in chunks:
                if stop.is_set():
                    break
                put(chunk)
            put(_DONE)
        except Exception as exc:  # handed to the consumer, which raises it on the loop
            put(exc)

    async def stream(
        self, messages: Sequence[ChatMessage], params: SamplingParams
    ) -> AsyncIterator[StreamItem]:
        self._check()
        kwargs = self._kwargs(messages, params)
        prompt_tokens = len(self._llm.tokenize(" ".join(m.content for m in messages).encode()))
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def put(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        async with self._lock:
            worker = asyncio.ensure_future(asyncio.to_thread(self._produce, kwargs, put, stop))
            parts: list[str] = []
            finish = "stop"
            try:
                while (item := await queue.get()) is not _DONE:
                    if isinstance(item, Exception):
                        raise BackendError(f"llama.cpp failed: {item}", retryable=False) from item
                    choice = item["choices"][0]
                    text = choice["delta"].get("content") or ""
                    finish = choice.get("finish_reason") or finish
                    if text:
                        parts.append(text)
                        yield text
            finally:
                stop.set()  # an abandoned stream must not keep the model busy
                await asyncio.shield(worker)
        usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=len(parts))
        yield Completion(text="".join(parts), finish_reason=finish, usage=usage)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            self._llm.close()
