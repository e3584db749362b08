"""A judge model for open-ended answers: MT-Bench-style rubric scores (1–10) and pairwise verdicts.

``Judge`` is the backend Protocol; ``LlamaCppJudge`` runs a local GGUF (a small instruct model from
the models directory). A 0.5B judge is weak: its agreement with GPT-4 is measured by
``cloud_hub.evaluation.calibration`` and reported, and the loop weights it below reference checks
and user feedback. Pairwise verdicts are asked in both orders and kept only when consistent, which
removes the strong position bias small judges have.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from cloud_hub.evaluation.scorers import FailureMode, Verdict
from shared.telemetry import TelemetryEvent

Preference = Literal["A", "B", "tie"]

RUBRIC_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI "
    "assistant to the user question. Consider correctness, helpfulness, relevance, accuracy, depth and "
    "level of detail. If a reference answer is given, compare with it and penalise mistakes. "
    "Reply with the rating only, an integer N from 1 (useless or wrong) to 10 (perfect), strictly in "
    'this format: "Rating: [[N]]".'
)
PAIRWISE_SYSTEM = (
    "Please act as an impartial judge and compare the responses of two AI assistants to the user "
    "question. Choose the assistant that follows the instructions and answers the question better, "
    "considering correctness first, then helpfulness and detail. Do not let the order, length or "
    'names influence you. Reply only with "[[A]]" if assistant A is better, "[[B]]" if assistant B is '
    'better, or "[[C]]" for a tie.'
)

_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_LOOSE_RATING = re.compile(r"(?:rating|score)\D{0,10}(\d+(?:\.\d+)?)", re.IGNORECASE)
_CHOICE = re.compile(r"\[\[\s*([ABC])\s*\]\]")


def parse_rating(text: str) -> float | None:
    for pattern in (_RATING, _LOOSE_RATING):
        match = pattern.search(text)
        if match:
            value = float(match.group(1))
            if 1.0 <= value <= 10.0:
                return value
    bare = re.match(r"\s*(\d+(?:\.\d+)?)\b", text)
    if bare and 1.0 <= float(bare.group(1)) <= 10.0:
        return float(bare.group(1))
    return None


def parse_choice(text: str) -> Preference | None:
    match = _CHOICE.search(text)
    if match is None:
        return None
    return {"A": "A", "B": "B", "C": "tie"}[match.group(1)]  # type: ignore[return-value]


def rubric_prompt(question: str, answer: str, reference: str | None = None, limit: int = 6000) -> str:
    parts = [f"[Question]\n{question[:limit]}\n"]
    if reference:
        parts.append(f"[The Start of Reference Answer]\n{reference[:limit]}\n[The End of Reference Answer]\n")
    parts.append(f"[The Start of Assistant's Answer]\n{answer[:limit]}\n[The End of Assistant's Answer]")
    return "\n".join(parts)


def pairwise_prompt(question: str, a: str, b: str, limit: int = 4000) -> str:
    return (
        f"[User Question]\n{question[:limit]}\n\n"
        f"[The Start of Assistant A's Answer]\n{a[:limit]}\n[The End of Assistant A's Answer]\n\n"
        f"[The Start of Assistant B's Answer]\n{b[:limit]}\n[The End of Assistant B's Answer]"
    )


class Judge(Protocol):
    name: str

    def complete(self, system: str, user: str, max_tokens: int = 12) -> str: ...

    def rating(self, system: str, user: str) -> float | None:
        """A 1–10 rating for a rubric prompt (a backend may use token probabilities)."""
        ...


class CountingJudge:
    """A judge that counts the model calls made through it: a run reports the calls it paid for,
    not the budget it was given."""

    def __init__(self, inner: Judge) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls = 0

    def complete(self, system: str, user: str, max_tokens: int = 12) -> str:
        self.calls += 1
        return self.inner.complete(system, user, max_tokens)

    def rating(self, system: str, user: str) -> float | None:
        self.calls += 1
        return self.inner.rating(system, user)


@dataclass(frozen=True, slots=True)
class PairwiseResult:
    preference: Preference | None  # None: the two orders disagreed or did not parse
    first: Preference | None
    second: Preference | None


def rate(judge: Judge, question: str, answer: str, reference: str | None = None) -> float | None:
    return judge.rating(RUBRIC_SYSTEM, rubric_prompt(question, answer, reference))


def compare(judge: Judge, question: str, a: str, b: str) -> PairwiseResult:
    first = parse_choice(judge.complete(PAIRWISE_SYSTEM, pairwise_prompt(question, a, b)))
    swapped = parse_choice(judge.complete(PAIRWISE_SYSTEM, pairwise_prompt(question, b, a)))
    second: Preference | None = {"A": "B", "B": "A", "tie": "tie"}.get(swapped) if swapped else None  # type: ignore[assignment]
    return PairwiseResult(first if first is not None and first == second else None, first, second)


class LlamaCppJudge:
    """Greedy decoding, a few output tokens: a rating costs about one prompt pass."""

    def __init__(self, model_path: Path, n_ctx: int = 4096, n_threads: int = 2) -> None:
        from llama_cpp import Llama

        self.name = f"llamacpp:{model_path.parent.name or model_path.stem}"
        self.n_ctx = n_ctx
        self._llm: Any = Llama(model_path=str(model_path), n_ctx=n_ctx, n_threads=n_threads, verbose=False)
        self._lock = threading.Lock()
        self._digits: dict[int, int] | None = None
        self._formatter: Any = None

    def _digit_ids(self) -> dict[int, int]:
        if self._digits is None:
            ids: dict[int, int] = {}
            for d in range(1, 10):
                toks = self._llm.tokenize(str(d).encode(), add_bos=False, special=False)
                if len(toks) == 1:
                    ids[int(toks[0])] = d
            self._digits = ids
        return self._digits

    def rating(self, system: str, user: str) -> float | None:
        """Probability-weighted rating (G-Eval style) read at the digit after a forced "Rating: [[".

        A small judge's greedy rating collapses onto one or two values (and sometimes breaks the
        format); the expectation over the digit distribution keeps its ranking signal, which is
        what agreement with a stronger judge is measured on.
        """
        prompt = self._chat_prompt(system, self._clip(user, 4)) + "Rating: [["
        first = self._next_token_logits(prompt)
        digits = self._digit_ids()
        p = self._softmax_over(first, digits)
        one = p.get(1, 0.0)
        if one > 0.05:
            # "1" may be the start of "10": split its mass by what follows it
            after = self._next_token_logits(prompt + "1")
            zero = self._llm.tokenize(b"0", add_bos=False, special=False)
            close = self._llm.tokenize(b"]]", add_bos=False, special=False)
            if len(zero) == 1 and close:
                pz = self._softmax_over(after, {int(zero[0]): 0, int(close[0]): 1})
                p[1] = one * pz.get(1, 0.0)
                p[10] = one * pz.get(0, 0.0)
        total = sum(p.values())
        return sum(k * v for k, v in p.items()) / total if total > 0 else None

    @staticmethod
    def _softmax_over(logits: Any, ids: dict[int, int]) -> dict[int, float]:
        import numpy as np

        keys = list(ids)
        z = np.array([float(logits[i]) for i in keys])
        e = np.exp(z - z.max())
        e /= e.sum()
        out: dict[int, float] = {}
        for k, w in zip(keys, e, strict=True):
            out[ids[k]] = out.get(ids[k], 0.0) + float(w)
        return out

    def _next_token_logits(self, prompt: str) -> Any:
        from llama_cpp import LogitsProcessorList

        captured: list[Any] = []

        def capture(input_ids: Any, scores: Any) -> Any:
            if not captured:
                captured.append(scores.copy())
            return scores

        with self._lock:
            if self._llm is None:
                raise RuntimeError("judge is closed")
            self._llm.create_completion(
                prompt, max_tokens=1, temperature=0.0, logits_processor=LogitsProcessorList([capture])
            )
        return captured[0]

    def _chat_prompt(self, system: str, user: str) -> str:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if self._formatter is None:
            llm = self._llm
            template = llm.metadata.get("tokenizer.chat_template")
            if not template:
                raise RuntimeError(f"{self.name} has no chat template")
            eos = llm.detokenize([llm.token_eos()]).decode("utf-8", "replace")
            bos = llm.detokenize([llm.token_bos()]).decode("utf-8", "replace") if llm.token_bos() >= 0 else ""
            self._formatter = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return str(self._formatter(messages=messages).prompt)

    def _clip(self, user: str, reserve_tokens: int) -> str:
        # keep the prompt inside the context: clip the middle of the user text, where the least
        # decision-relevant material (long answers' bodies) sits
        budget_chars = (self.n_ctx - reserve_tokens - 200) * 3
        if len(user) <= budget_chars:
            return user
        half = budget_chars // 2
        return user[:half] + "\n[...]\n" + user[-half:]

    def complete(self, system: str, user: str, max_tokens: int = 12) -> str:
        user = self._clip(user, max_tokens)
        with self._lock:
            if self._llm is None:
                raise RuntimeError("judge is closed")
            out = self._llm.create_chat_completion(
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                max_tokens=max_tokens,
                temperature=0.0,
            )
        return str(out["choices"][0]["message"]["content"] or "")

    def close(self) -> None:
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None


class JudgeScorer:
    """Scores open-ended answers that carry their prompt; passes at ``pass_at`` of 10 or more."""

    def __init__(self, judge: Judge, pass_at: float = 7.0) -> None:
        self.judge = judge
        self.pass_at = pass_at
        self.name = f"judge:{judge.name}"

    def score(self, event: TelemetryEvent) -> Verdict | None:
        if not event.prompt or event.completion is None:
            return None
        rating = rate(self.judge, event.prompt, event.completion, event.reference)
        if rating is None:
            return None
        ok = rating >= self.pass_at
        return Verdict(
            self.name, ok, (rating - 1) / 9, None if ok else FailureMode.LOW_JUDGE_SCORE, f"rating {rating:g}"
        )
