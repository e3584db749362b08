"""Detect regenerations: an explicit flag, or the same user re-asking a near-duplicate soon after.

A re-ask is the cheapest implicit quality signal there is: the user did not accept the answer.
Similarity is word-set Jaccard on normalised text, which needs no model on the request path and
catches the common "same question, slightly reworded" case; the hub's evaluation treats the
previous answer (``regenerates``) as a likely failure.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True, slots=True)
class RegenerationVerdict:
    regeneration: bool
    regenerates: str = ""  # response id of the earlier answer being re-asked


@dataclass(slots=True)
class _Ask:
    at: float
    words: frozenset[str]
    response_id: str


class RegenerationDetector:
    """Bounded memory: at most ``max_users`` users (LRU) × ``per_user`` recent prompts each."""

    def __init__(
        self,
        window_s: float = 300.0,
        threshold: float = 0.8,
        max_users: int = 10_000,
        per_user: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self.threshold = threshold
        self.max_users = max_users
        self.per_user = per_user
        self._clock = clock
        self._recent: OrderedDict[str, deque[_Ask]] = OrderedDict()

    def check(self, user: str, prompt: str, response_id: str, explicit: bool = False) -> RegenerationVerdict:
        """Classify this ask, then remember it for later ones."""
        now = self._clock()
        words = _words(prompt)
        history = self._recent.pop(user, None) if user else None
        if history is None:
            history = deque(maxlen=self.per_user)
        while history and now - history[0].at > self.window_s:
            history.popleft()
        previous = ""
        for ask in reversed(history):
            if jaccard(words, ask.words) >= self.threshold:
                previous = ask.response_id
                break
        if user:
            history.append(_Ask(now, words, response_id))
            self._recent[user] = history
            while len(self._recent) > self.max_users:
                self._recent.popitem(last=False)
        return RegenerationVerdict(explicit or bool(previous), previous)
