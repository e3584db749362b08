"""Answer-agreement cascade: accept a cheap model's answer when enough cheap answers agree.

The rule asks cheap models one at a time, in a fixed order. After each answer it accepts the most
common normalised answer once ``k`` answers match (or, with a success head, once the head's
probability for the model that just answered clears ``accept_p``); it gives up on the cheap models as
soon as ``k`` matching answers are out of reach, and then asks the final (strong) model, whose answer
stands. A head can also send a prompt straight to the final model when every cheap model looks
hopeless (``skip_p``), which saves the cheap calls that could not have settled it.

``step`` is the rule one answer at a time, as a live caller uses it; ``replay`` runs the same rule
over recorded answers of many prompts at once (numpy) and reports what each prompt paid: the sum of
the recorded costs of every model it asked.

Answers are compared after normalisation: a multiple-choice reply becomes its option letter, code
becomes its syntax tree with identifiers renamed in order of first use (so ``def f(a)`` and ``def
g(x)`` with the same body agree). Anything that does not normalise never counts towards agreement.
"""

from __future__ import annotations

import ast
import builtins
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
NO_ANSWER = -1

_CHOICE_LINE = re.compile(r"single choice\s+from\s+((?:\"[A-Z]\"(?:\s+or\s+)?)+)", re.I)
_LETTER = re.compile(r"^\(?([A-Z])(?:\)|\.|:|\s|$)")
_FENCE = re.compile(r"```(?:python|py|Python)?[ \t]*\r?\n(.*?)```", re.S)
_TAGGED = re.compile(r"\[PYTHON\](.*?)\[/PYTHON\]", re.S)
_BUILTINS = frozenset(dir(builtins))


def recorded_text(raw: str) -> str:
    """RouterBench stores prompts and replies as the repr of a one-item list: unwrap it."""
    text = raw.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return text
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return "\n".join(value)
    return text


def question_text(prompt: str) -> str:
    """The question a few-shot multiple-choice prompt asks: its last block, without the worked examples.

    RouterBench's ARC and Winogrande prompts open with the same worked examples, longer than a sentence
    embedder reads, so every whole prompt embeds to the same vector. Other prompts come back unchanged.
    """
    text = recorded_text(prompt)
    if len(_CHOICE_LINE.findall(text)) < 2:
        return prompt
    return text[text.rfind("\n\n") + 2 :].strip() or prompt


def choices_of(prompt: str) -> tuple[str, ...]:
    """Option letters of the prompt's last question, from its "single choice from "A" or "B"" line."""
    found = _CHOICE_LINE.findall(recorded_text(prompt))
    return tuple(re.findall(r"[A-Z]", found[-1])) if found else ()


def mcq_letter(response: str, letters: Sequence[str]) -> str | None:
    """The option letter a reply leads with, if it is one of ``letters``.

    A reply that names the option's words instead ("Rachel") is left out: the recorded grader marks
    it wrong, so counting it as agreement would credit answers the benchmark does not.
    """
    m = _LETTER.match(recorded_text(response).strip())
    return m.group(1) if m and m.group(1) in letters else None


class _Rename(ast.NodeTransformer):
    """Identifiers become v0, v1, ... in order of first use; builtins and attributes keep their names."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def _n(self, name: str) -> str:
        if name in _BUILTINS:
            return name
        return self.names.setdefault(name, f"v{len(self.names)}")

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = self._n(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg, node.annotation = self._n(node.arg), None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name, node.returns = self._n(node.name), None
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:] or [ast.Pass()]  # a docstring is prose, not behaviour
        node.body = body
        self.generic_visit(node)
        return node


def code_key(response: str) -> str | None:
    """The first function a reply defines, as a canonical syntax tree; None when there is none."""
    text = recorded_text(response)
    blocks = _TAGGED.findall(text) or _FENCE.findall(text) or [text]
    for block in blocks:
        try:
            tree = ast.parse(block.replace("\r\n", "\n"))
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            continue
        defs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
        if defs:
            # imports it relies on belong to the answer; tests and prints after it do not
            keep: list[ast.stmt] = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
            keep.append(defs[0])
            module = _Rename().visit(ast.Module(body=keep, type_ignores=[]))
            return ast.dump(module, annotate_fields=False)
    return None


def normalise(response: str, prompt: str) -> str | None:
    """Comparable form of a reply: its option letter when the prompt offers options, else its code."""
    letters = choices_of(prompt)
    return mcq_letter(response, letters) if letters else code_key(response)


def task_of(prompts: Sequence[str]) -> str:
    """What the answers are compared as: "mcq", "code" or "mixed" (both, a tenth or more each)."""
    mcq = sum(1 for p in prompts if _CHOICE_LINE.search(recorded_text(p)))
    share = mcq / max(len(prompts), 1)
    return "mcq" if share > 0.9 else "code" if share < 0.1 else "mixed"


@dataclass(frozen=True)
class CascadeRule:
    models: tuple[str, ...]  # cheap models, in asking order
    final: str  # asked when the cheap models do not settle the prompt; its answer stands
    k: int  # matching cheap answers needed to accept
    accept_p: float | None = None  # head: accept one answer whose model's success probability >= this
    skip_p: float | None = None  # head: straight to ``final`` when every cheap probability < this

    def __post_init__(self) -> None:
        if not 1 <= self.k <= max(1, len(self.models)):
            raise ValueError(f"k={self.k} needs 1..{len(self.models)} cheap models")

    def describe(self) -> str:
        head = ""
        if self.accept_p is not None:
            head += f", accept p>={self.accept_p:.2f}"
        if self.skip_p is not None:
            head += f", skip p<{self.skip_p:.2f}"
        return f"{' > '.join(self.models)} (k={self.k}{head}) > {self.final}"


@dataclass(frozen=True)
class Step:
    """What to do next: ``ask`` a model, or accept ``answer`` (from cheap model ``by``)."""

    ask: str | None = None
    answer: str | None = None
    by: str | None = None


def step(
    rule: CascadeRule, answers: Sequence[str | None], success: Mapping[str, float] | None = None
) -> Step:
    """Next move given the normalised answers of the first ``len(answers)`` cheap models."""
    n = len(answers)
    skip = rule.skip_p
    # an unknown probability never counts as hopeless
    if (
        n == 0
        and success is not None
        and skip is not None
        and rule.models
        and all(m in success and success[m] < skip for m in rule.models)
    ):
        return Step(ask=rule.final)
    votes = Counter(a for a in answers if a is not None)
    if n:
        last = answers[-1]
        top, count = max(votes.items(), key=lambda kv: (kv[1], -answers.index(kv[0])), default=(None, 0))
        if top is not None and count >= rule.k:
            return Step(answer=top, by=rule.models[answers.index(top)])
        p = success.get(rule.models[n - 1]) if success is not None else None
        if last is not None and rule.accept_p is not None and p is not None and p >= rule.accept_p:
            return Step(answer=last, by=rule.models[n - 1])
        head = rule.accept_p is not None and success is not None
        if not head and count + (len(rule.models) - n) < rule.k:
            return Step(ask=rule.final)  # k matching answers are out of reach
    if n < len(rule.models):
        return Step(ask=rule.models[n])
    return Step(ask=rule.final)


@dataclass(frozen=True)
class Replay:
    """Per prompt: the score of the accepted answer, the cost paid and how many models were asked."""

    score: F64
    cost: F64
    asked: I64
    escalated: NDArray[np.bool_]


def encode(answers: Sequence[Sequence[str | None]]) -> I64:
    """(models, rows) of normalised answers -> (rows, models) ints; equal answers share a code."""
    codes: dict[str, int] = {}
    cols = [[NO_ANSWER if a is None else codes.setdefault(a, len(codes)) for a in col] for col in answers]
    out: I64 = np.array(cols, dtype=np.int64).T
    return out


def replay(
    rule: CascadeRule,
    models: Sequence[str],
    codes: I64,
    scores: F64,
    costs: F64,
    success: F64 | None = None,
) -> Replay:
    """``step`` over every row at once. ``codes``/``scores``/``costs``/``success`` are (rows, models)."""
    col = [list(models).index(m) for m in rule.models]
    fin = list(models).index(rule.final)
    n = codes.shape[0]
    rows = np.arange(n)
    accept_p = rule.accept_p if success is not None else None
    score, cost = np.zeros(n), np.zeros(n)
    asked = np.zeros(n, dtype=np.int64)
    escalated = np.zeros(n, dtype=bool)
    open_ = np.ones(n, dtype=bool)  # still asking cheap models
    if success is not None and rule.skip_p is not None:
        escalated = np.all(success[:, col] < rule.skip_p, axis=1)
        open_ &= ~escalated
    for i, j in enumerate(col):
        cost[open_] += costs[open_, j]
        asked[open_] += 1
        seen = codes[:, col[: i + 1]]
        valid = seen != NO_ANSWER
        # per row and answer so far: how many answers match it; the earliest of the most common wins
        counts = ((seen[:, :, None] == seen[:, None, :]) & valid[:, None, :]).sum(axis=2) * valid
        first = np.argmax(counts, axis=1)
        best = counts[rows, first]
        agreed = open_ & (best >= rule.k)
        score[agreed] = scores[agreed, np.asarray(col)[first[agreed]]]
        open_ &= ~agreed
        if accept_p is not None and success is not None:
            sure = open_ & valid[:, i] & (success[:, j] >= accept_p)
            score[sure] = scores[sure, j]
            open_ &= ~sure
        else:  # k matching answers out of reach: stop paying for cheap ones
            hopeless = open_ & (best + len(col) - i - 1 < rule.k)
            escalated |= hopeless
            open_ &= ~hopeless
    escalated |= open_
    cost[escalated] += costs[escalated, fin]
    asked[escalated] += 1
    score[escalated] = scores[escalated, fin]
    return Replay(score, cost, asked, escalated)
