"""Local GGUF model through llama-cpp-python, with per-token confidence.

llama.cpp is neither thread-safe nor asynchronous, so every call runs on one dedicated worker
thread (jobs queue up in order) and tokens cross to the event loop with ``call_soon_threadsafe``.
That worker only generates: a job's prompt is rendered and tokenized before it joins the queue,
on another thread (llama.cpp's tokenizer only reads the vocabulary), so a prompt too long for the
context window is refused without waiting behind other requests, and without holding them up.
A prompt whose text alone cannot fit (more bytes than the window's tokens could cover at the
vocabulary's longest piece) is refused before it is tokenized at all: tokenizing 25,000 short
messages took llama.cpp about 30 s.

Confidence comes from a logits processor rather than ``logits_all=True`` / ``logprobs``: those
keep logits for every position (about 3x the memory and a much slower prompt pass). The
processor runs first in the sampler chain, so it sees the model's raw logits for the next token;
it keeps a copy and their log-sum-exp, and because this backend drives ``Llama.generate`` itself
it learns the chosen token right away, including the last one, without waiting for the next call
to reveal it through ``input_ids[-1]``.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ctypes
import math
import random
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from edge_agent.backends.base import (
    GenerationEnd,
    GenerationEvent,
    GenerationJob,
    LocalBackendError,
    PromptTooLong,
    TokenStep,
)
from edge_agent.backends.locate import locate_local_model
from edge_agent.backends.text import StopScanner
from shared.config import EdgeSettings

# llama-cpp-python's own completion defaults, kept so raw and served runs sample alike
_TOP_K = 40
_MIN_P = 0.05

_CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

Emit = Callable[[GenerationEvent | BaseException], None]


class _LogProbTracker:
    """Logits processor that remembers the log-softmax normaliser of the latest step."""

    def __init__(self, n_vocab: int) -> None:
        self._logits = np.zeros(n_vocab, dtype=np.float32)
        self._lse = 0.0

    def __call__(self, input_ids: npt.NDArray[np.intc], scores: npt.NDArray[np.single]) -> Any:
        # later samplers rewrite this buffer in place, so keep a copy of the raw logits
        np.copyto(self._logits, scores)
        top = float(scores.max())
        self._lse = top + float(np.log(np.exp(scores - top).sum()))
        return scores

    def logprob(self, token: int) -> float:
        return float(self._logits[token]) - self._lse


class PromptFarTooLong(PromptTooLong):
    """A prompt refused from its length in bytes alone: its token count is only bounded below."""

    def __init__(self, at_least: int, n_ctx: int) -> None:
        super().__init__(at_least, n_ctx)
        self.args = (
            f"the prompt has at least {at_least} tokens but the local model's context window is {n_ctx}",
        )


def _longest_piece(llm: llama_cpp.Llama) -> int:
    """Bytes of the vocabulary's longest token text, special tokens included (at least 1)."""
    size = 1024
    buf = ctypes.create_string_buffer(size)
    vocab = llm._model.vocab
    # a negative count is the size a piece needs when it does not fit the buffer
    pieces = (llama_cpp.llama_token_to_piece(vocab, i, buf, size, 0, True) for i in range(llm.n_vocab()))
    longest = max(abs(int(n)) for n in pieces)
    return max(1, longest)


class LlamaCppBackend:
    """``LocalBackend`` over one ``llama_cpp.Llama``; construct off the event loop (it loads)."""

    concurrency = 1  # generations at once: one worker thread

    def __init__(self, model_path: Path, *, name: str | None = None, n_ctx: int = 4096, n_threads: int = 2):
        self._path = model_path
        self._name = name or model_path.stem
        self._llm = llama_cpp.Llama(
            model_path=str(model_path), n_ctx=n_ctx, n_threads=n_threads, logits_all=False, verbose=False
        )
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._closed = False
        template = self._llm.metadata.get("tokenizer.chat_template") or _CHATML
        eos, bos = self._llm.token_eos(), self._llm.token_bos()
        self._formatter = Jinja2ChatFormatter(
            template,
            eos_token=self._llm._model.token_get_text(eos) if eos != -1 else "",
            bos_token=self._llm._model.token_get_text(bos) if bos != -1 else "",
        )
        self._longest_piece = _longest_piece(self._llm)

    @classmethod
    def from_config(cls, settings: EdgeSettings) -> LlamaCppBackend:
        """The GGUF ``settings.local_model`` names, loaded (blocking)."""
        path, name = locate_local_model(settings)
        cfg = settings.local_model
        return cls(path, name=name, n_ctx=cfg.n_ctx, n_threads=cfg.n_threads)

    @property
    def model_name(self) -> str:
        return self._name

    @property
    def model_path(self) -> Path:
        return self._path

    @property
    def n_ctx(self) -> int:
        return int(self._llm.n_ctx())

    @property
    def llama(self) -> llama_cpp.Llama:
        """The underlying model, for benchmarks that compare against raw llama-cpp-python."""
        return self._llm

    def prompt_tokens(self, job: GenerationJob) -> list[int]:
        if job.prompt is not None:
            add_bos = bool(self._llm._model.add_bos_token())
            return list(self._llm.tokenize(job.prompt.encode("utf-8"), add_bos=add_bos, special=True))
        messages: Any = [{"role": m.role, "content": m.content} for m in job.messages]
        try:
            formatted = self._formatter(messages=messages)
        except Exception as exc:  # jinja raise_exception() in templates that reject a role order
            raise LocalBackendError(f"the model's chat template rejected the messages: {exc}") from None
        return list(self._llm.tokenize(formatted.prompt.encode("utf-8"), add_bos=False, special=True))

    def fitting_prompt(self, job: GenerationJob) -> list[int]:
        """``prompt_tokens(job)``, or ``PromptTooLong`` when it and the job's prefix leave no room
        in the context window; a prompt whose text is too long to fit is refused untokenized."""
        n_ctx = self.n_ctx
        prefix = len(job.prefix_tokens)
        if job.prompt is not None:
            text_bytes = len(job.prompt.encode("utf-8"))
        else:
            text_bytes = sum(len(m.content.encode("utf-8")) for m in job.messages)
        at_least = math.ceil(text_bytes / self._longest_piece)
        if at_least + prefix >= n_ctx:
            raise PromptFarTooLong(at_least + prefix, n_ctx)
        prompt = self.prompt_tokens(job)
        if len(prompt) + prefix >= n_ctx:
            raise PromptTooLong(len(prompt) + prefix, n_ctx)
        return prompt

    async def stream(self, job: GenerationJob) -> AsyncGenerator[GenerationEvent, None]:
        if self._closed:
            raise LocalBackendError("the local model is shut down")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[GenerationEvent | BaseException] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(item: GenerationEvent | BaseException) -> None:
            with contextlib.suppress(RuntimeError):  # loop already closed: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, item)

        prompt = await asyncio.to_thread(self.fitting_prompt, job)
        if self._closed:
            raise LocalBackendError("the local model is shut down")
        self._executor.submit(self._run_guarded, job, prompt, emit, cancelled)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, GenerationEnd):
                    return
        finally:
            cancelled.set()

    def _run_guarded(
        self, job: GenerationJob, prompt: list[int], emit: Emit, cancelled: threading.Event
    ) -> None:
        if cancelled.is_set():
            return
        try:
            self._run(job, prompt, emit, cancelled)
        except LocalBackendError as exc:
            emit(exc)
        except Exception as exc:
            emit(LocalBackendError(f"local generation failed: {type(exc).__name__}: {exc}"))

    def _run(self, job: GenerationJob, prompt: list[int], emit: Emit, cancelled: threading.Event) -> None:
        llm = self._llm
        params = job.params
        prefix = list(job.prefix_tokens)
        n_ctx = self.n_ctx
        budget = min(params.max_tokens, n_ctx - len(prompt))
        llm.set_seed(params.seed if params.seed is not None else random.getrandbits(32))
        tracker = _LogProbTracker(llm.n_vocab())
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        scanner = StopScanner(params.stop)
        for token in prefix:  # replays the draft silently so held-back text resumes exactly
            scanner.feed(decoder.decode(llm.detokenize([token])))
        produced = len(prefix)
        finish = "length"
        stopped = False
        if produced < budget:
            gen = llm.generate(
                prompt + prefix,
                top_k=_TOP_K,
                top_p=params.top_p,
                min_p=_MIN_P,
                temp=params.temperature,
                repeat_penalty=1.0,
                logits_processor=llama_cpp.LogitsProcessorList([tracker]),
            )
            try:
                for token in gen:
                    if cancelled.is_set():
                        return
                    logprob = tracker.logprob(token)
                    if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
                        finish = "stop"
                        break
                    produced += 1
                    released, hit = scanner.feed(decoder.decode(llm.detokenize([token])))
                    emit(TokenStep(token=token, logprob=logprob, text=released))
                    if hit:
                        finish, stopped = "stop", True
                        break
                    if produced >= budget:
                        break
            finally:
                gen.close()
        tail, hit = ("", False) if stopped else scanner.flush(decoder.decode(b"", final=True))
        if hit:
            finish = "stop"
        emit(GenerationEnd(finish, prompt_tokens=len(prompt), completion_tokens=produced, text=tail))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        # the model is freed on the worker's side of the fence: no job can still be using it
        self._llm.close()
