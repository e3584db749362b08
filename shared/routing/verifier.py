"""Cheap checks of a drafted answer, for the cascade "answer locally, escalate when uncertain".

A small model's wrong answers often show it: it stops mid-sentence, its arithmetic does not add up,
a count comes out fractional, it hedges. These signals cost microseconds, need no second model, and
complement the token-probability confidence; ``answer_features`` turns them into a fixed vector that
the success heads read next to the prompt embedding.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable

ANSWER_FEATURES = (
    "has_final_answer",
    "arithmetic_error",
    "non_integer_answer",
    "log_length",
    "steps",
    "hedging",
    "truncated",
)

_NUM = r"-?\$?\d[\d,]*(?:\.\d+)?"
_FINAL = re.compile(r"(?:####|answer is|answer:|=)\s*\**\s*(" + _NUM + r")\s*\**\s*\.?\s*$", re.I)
_ANNOTATED = re.compile(r"<<([^=<>]+)=([^<>]+)>>")
_INLINE = re.compile(
    r"((?:\d[\d,]*(?:\.\d+)?\s*[-+*/x×]\s*)+\d[\d,]*(?:\.\d+)?)\s*=\s*\$?(-?\d[\d,]*(?:\.\d+)?)"
)
_HEDGE = re.compile(
    r"\b(however|assum\w*|approximately|roughly|round(?:ed|ing)?|not sure|unclear|cannot be determined)\b",
    re.I,
)
_OPS: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def safe_arith(expr: str) -> float | None:
    """Value of a + - * / expression over numbers; None for anything else (never ``eval``)."""
    text = expr.replace(",", "").replace("$", "").replace("×", "*").replace("x", "*").strip()
    if len(text) > 200:
        return None
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return None

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError("unsupported")

    try:
        value = walk(tree)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def _num(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace("$", ""))
    except ValueError:
        return None


def arithmetic_errors(answer: str) -> tuple[int, int]:
    """(checked, wrong) equations in the answer, both ``<<a*b=c>>`` annotations and inline ``a * b = c``."""
    checked = wrong = 0
    plain = _ANNOTATED.sub(" ", answer)  # an annotated equation is checked once, not again inline
    for expr, val in [*_ANNOTATED.findall(answer), *_INLINE.findall(plain)]:
        got, want = safe_arith(expr), _num(val)
        if got is None or want is None:
            continue
        checked += 1
        if abs(got - want) > 1e-4 * max(1.0, abs(want)):
            wrong += 1
    return checked, wrong


def answer_features(answer: str) -> list[float]:
    """Signals in ``ANSWER_FEATURES`` order, each roughly in [0, 1]."""
    text = answer.strip()
    tail = text[-200:]
    final = _FINAL.search(tail)
    final_value = _num(final.group(1)) if final else None
    checked, wrong = arithmetic_errors(text)
    truncated = bool(text) and not re.search(r"[.!?)\]\d*`\"']\s*$", text)
    return [
        1.0 if final else 0.0,
        1.0 if wrong else 0.0,
        1.0 if final_value is not None and final_value != int(final_value) else 0.0,
        math.log1p(len(text)) / 8.0,
        min(checked, 10) / 10.0,
        1.0 if _HEDGE.search(text) else 0.0,
        1.0 if truncated else 0.0,
    ]
