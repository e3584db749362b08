"""In-process vLLM engine (the CPU build here, a GPU build in production).

The engine core runs in a child process that vLLM spawns, so the process creating this backend
must be started under an ``if __name__ == "__main__":`` guard — the ``cloud-hub`` console script
is. Prompts are rendered with the model's own chat template and sent as token ids, so the count
of prompt tokens we bill is exactly what the engine processed.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from cloud_hub.backends.base import Completion, HubBackendError, StreamItem, locate_model
from shared.config import HubModelEntry
from shared.wire import ChatMessage, SamplingParams, Usage

log = logging.getLogger(__name__)

# Thread binding "all" oversubscribes small hosts; 2 GiB of KV cache fits next to the edge model.
_CPU_DEFAULTS = {"VLLM_CPU_OMP_THREADS_BIND": "0-1", "VLLM_CPU_KVCACHE_SPACE": "2"}


def _chat(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    # Chat templates know "system" but not the newer "developer" role, which means the same thing.
    return [{"role": "system" if m.role == "developer" else m.role, "content": m.content} for m in messages]


class VllmBackend:
    def __init__(self, engine: Any, max_model_len: int) -> None:
        self._engine = engine
        self._tokenizer = engine.get_tokenizer()
        self._max_model_len = max_model_len
        self._closed = False

    @classmethod
    async def from_config(cls, entry: HubModelEntry, models_dir: Path) -> VllmBackend:
        # Installed HF folders carry a "-hf" suffix next to the GGUF of the same model.
        path = locate_model(entry, models_dir, f"{entry.name}-hf", entry.name)
        return cls.open(path, max_model_len=entry.max_model_len)

    @classmethod
    def open(cls, model_path: Path, *, max_model_len: int = 4096) -> VllmBackend:
        for key, value in _CPU_DEFAULTS.items():
            os.environ.setdefault(key, value)
        if not (model_path / "config.json").is_file():
            raise FileNotFoundError(f"{model_path} is not a Hugging Face model folder (no config.json)")
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = AsyncEngineArgs(
            model=str(model_path),
            max_model_len=max_model_len,
            dtype="bfloat16",
            disable_log_stats=True,
        )
        log.info("starting vLLM engine for %s", model_path)
        return cls(AsyncLLM.from_engine_args(args), max_model_len)

    def _prompt(self, messages: Sequence[ChatMessage], params: SamplingParams) -> list[int]:
        text = self._tokenizer.apply_chat_template(
            _chat(messages), tokenize=False, add_generation_prompt=True
        )
        ids: list[int] = list(self._tokenizer.encode(text, add_special_tokens=False))
        if len(ids) + params.max_tokens > self._max_model_len:
            raise HubBackendError(
                f"prompt of {len(ids)} tokens + max_tokens {params.max_tokens} exceeds the "
                f"context of {self._max_model_len}",
                retryable=False,
            )
        return ids

    def _sampling(self, params: SamplingParams) -> Any:
        from vllm import SamplingParams as VllmSampling
        from vllm.sampling_params import RequestOutputKind

        return VllmSampling(
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            stop=list(params.stop) or None,
            seed=params.seed,
            output_kind=RequestOutputKind.DELTA,
        )

    async def stream(
        self, messages: Sequence[ChatMessage], params: SamplingParams
    ) -> AsyncIterator[StreamItem]:
        if self._closed:
            raise HubBackendError("vLLM backend is closed", retryable=True)
        ids = self._prompt(messages, params)
        parts: list[str] = []
        completion_tokens = 0
        finish = "stop"
        try:
            # Leaving this loop early (deadline, cancelled request) closes the generator, which
            # makes vLLM abort the request and free its KV blocks.
            async for out in self._engine.generate(
                {"prompt_token_ids": ids}, self._sampling(params), request_id=uuid.uuid4().hex
            ):
                delta = out.outputs[0]
                completion_tokens += len(delta.token_ids)
                if delta.text:
                    parts.append(delta.text)
                    yield delta.text
                if out.finished:
                    finish = delta.finish_reason or "stop"
        except HubBackendError:
            raise
        except ValueError as exc:
            raise HubBackendError(f"vLLM rejected the request: {exc}", retryable=False) from exc
        except Exception as exc:
            if type(exc).__name__ == "EngineDeadError":
                raise HubBackendError(f"vLLM engine died: {exc}", retryable=True) from exc
            raise HubBackendError(f"vLLM failed: {type(exc).__name__}: {exc}", retryable=True) from exc
        usage = Usage(prompt_tokens=len(ids), completion_tokens=completion_tokens)
        yield Completion(text="".join(parts), finish_reason=finish, usage=usage)

    async def generate(self, messages: Sequence[ChatMessage], params: SamplingParams) -> Completion:
        async for item in self.stream(messages, params):
            if isinstance(item, Completion):
                return item
        raise HubBackendError("vLLM stream ended without a result", retryable=True)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._engine.shutdown()
