"""llama.cpp backend: a GGUF model on the hub's CPU, the fallback when no vLLM build fits.

llama.cpp calls block and a ``Llama`` object is not re-entrant, so calls run one at a time in a
worker thread; the hub's socket loop keeps serving heartbeats and other requests meanwhile.

Both paths render the prompt with one formatter (the GGUF's own chat template, else ChatML), so
a stream counts the same prompt tokens as a plain call: llama.cpp reports usage only for the
latter, and counting the raw message text instead missed the template (7 tokens against 37).
Threads default to half the cores this process may use (``HubModelEntry.n_threads``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from cloud_hub.backends.base import Completion, HubBackendError, StreamItem, locate_model
from shared.config import HubModelEntry
from shared.wire import ChatMessage, SamplingParams, Usage

_DONE = object()
_CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


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
        llm = self._llm
        eos, bos = llm.token_eos(), llm.token_bos()
        self._formatter = Jinja2ChatFormatter(
            llm.metadata.get("tokenizer.chat_template") or _CHATML,
            eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos] if eos != -1 else None,
        )
        llm.chat_handler = self._formatter.to_chat_handler()
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def from_config(cls, entry: HubModelEntry, models_dir: Path) -> LlamaCppBackend:
        path = locate_model(entry, models_dir, entry.name)
        return await asyncio.to_thread(cls, path, n_ctx=entry.max_model_len, n_threads=entry.n_threads)

    @property
    def n_threads(self) -> int:
        return int(self._llm.n_threads)

    def prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        """The prompt's length as a plain call counts it (the chat handler tokenizes the same way)."""
        rendered = self._formatter(messages=cast(Any, messages))
        encoded = rendered.prompt.encode("utf-8")
        return len(self._llm.tokenize(encoded, add_bos=not rendered.added_special, special=True))

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
            raise HubBackendError("llama.cpp backend is closed", retryable=True)

    async def generate(self, messages: Sequence[ChatMessage], params: SamplingParams) -> Completion:
        self._check()
        async with self._lock:
            try:
                res: Any = await asyncio.to_thread(
                    self._llm.create_chat_completion, **self._kwargs(messages, params)
                )
            except ValueError as exc:  # context overflow and similar request errors
                raise HubBackendError(f"llama.cpp rejected the request: {exc}", retryable=False) from exc
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
        try:
            prompt_tokens = await asyncio.to_thread(self.prompt_tokens, kwargs["messages"])
        except ValueError as exc:  # a template's raise_exception(), as the plain call reports it
            raise HubBackendError(f"llama.cpp rejected the request: {exc}", retryable=False) from exc
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
                        raise HubBackendError(f"llama.cpp failed: {item}", retryable=False) from item
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
