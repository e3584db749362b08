"""The LLM judge: a hub GGUF model asked a yes/no question, scored from its next-token logits.

No text is generated: the prompt is evaluated once and the judge reads the logits of the first
answer token, so the score is ``P(yes) / (P(yes) + P(no))`` over the model's spellings of each
word. One forward pass per candidate; the instruction part of the prompt is evaluated once and
kept in the model's KV cache, so only the two questions (and answer) are new work. The prefix and
the rest are always evaluated as the same two batches: llama.cpp's arithmetic depends on how tokens
are batched, and a score must not depend on which candidate came before.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cloud_hub.backends.llamacpp import find_gguf
from cloud_hub.cache.judge import JudgeItem, domain_threshold
from cloud_hub.cache.judge_prompts import DEFAULT_PROMPT, NO, PROMPTS, YES


def chatml_prefix(system: str) -> str:
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n"


def chatml_turn(user: str) -> str:
    """What follows ``chatml_prefix``: the user's message and the opening of the reply."""
    return f"{user}<|im_end|>\n<|im_start|>assistant\n"


class LlmJudge:
    def __init__(
        self,
        model_path: Path,
        *,
        threshold: float = 0.5,
        prompt: str = DEFAULT_PROMPT,
        n_ctx: int = 2048,
        n_threads: int = 2,
    ) -> None:
        import llama_cpp

        self._lib: Any = llama_cpp
        gguf = find_gguf(model_path)
        self._llm: Any = llama_cpp.Llama(
            model_path=str(gguf), n_ctx=n_ctx, n_threads=n_threads, verbose=False
        )
        template = str(self._llm.metadata.get("tokenizer.chat_template", ""))
        if "<|im_start|>" not in template:
            raise ValueError(f"{gguf.name}: the judge prompt is ChatML; this model uses another template")
        self._model = gguf.stem
        self.prompt = PROMPTS[prompt]
        self._prefix: list[int] = self._llm.tokenize(
            chatml_prefix(self.prompt.system).encode(), add_bos=False, special=True
        )
        self._yes = self._first_tokens(YES)
        self._no = self._first_tokens(NO)
        self._default = threshold
        self.thresholds: dict[str, float] = {}
        self._lock = threading.Lock()

    def _first_tokens(self, words: Sequence[str]) -> list[int]:
        return sorted({self._llm.tokenize(w.encode(), add_bos=False)[0] for w in words})

    @property
    def name(self) -> str:
        # the prompt's digest too: thresholds fitted on one prompt's scores mean nothing for another's
        return f"llm:{self._model}:{self.prompt.digest}"

    def threshold(self, domain: str) -> float:
        return domain_threshold(self.thresholds, domain, self._default)

    def set_thresholds(self, thresholds: dict[str, float]) -> None:
        """Domain thresholds fitted from reviewed verdicts (``judge.fit_domain_thresholds``)."""
        self.thresholds.update(thresholds)

    def _logits(self, turn: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        llm = self._llm
        n = len(self._prefix)
        if llm.n_tokens < n or llm.input_ids[:n].tolist() != self._prefix:
            llm.reset()
            llm.eval(self._prefix)
        llm.n_tokens = n  # drop the last candidate; eval() clears its KV entries
        llm.eval(llm.tokenize(turn.encode(), add_bos=False, special=True))
        ptr = self._lib.llama_get_logits(llm.ctx)
        return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float32)

    def score(self, items: Sequence[JudgeItem]) -> list[float]:
        out = []
        with self._lock:  # a llama.cpp context is not re-entrant
            for item in items:
                logits = self._logits(chatml_turn(self.prompt.user(item))).astype(np.float64)
                yes = np.logaddexp.reduce(logits[self._yes])
                no = np.logaddexp.reduce(logits[self._no])
                out.append(float(1.0 / (1.0 + np.exp(no - yes))))
        return out

    def close(self) -> None:
        with self._lock:
            self._llm.close()
