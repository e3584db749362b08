"""Rule checks the hub runs before its judges: traps the edge's guards let into the grey zone.

The edge vetoes changed numbers, operators, plain negations, known antonyms and one-sided or
swapped entities before a candidate can be grey. What reaches the hub still holds two kinds of
trap that a similarity score rates high: a negation spelled as a prefix or a verb ("safe" /
"unsafe", "like" / "dislike", "fall asleep" / "avoid falling asleep") and a change of whose thing
it is ("my account" / "all accounts", "my tax return" / "my company's tax return"). ``TrapGuard``
is a judge like the others (score 0 on a trap, 1 otherwise, approving at 0.5), first in line so
the costlier judges never see a trap, and its reviewed verdicts can turn it off for a domain.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cloud_hub.cache.judge import JudgeItem, domain_threshold

_WORD = re.compile(r"[a-z]+(?:'s)?")
_PREFIXES = ("un", "dis", "non", "in", "im", "ir", "il")
# negations by kind: two ways of saying "not" (or "stop") are the same question, one against none is not
_NEGATORS = {
    **dict.fromkeys(
        ["not", "no", "never", "without", "cannot", "neither", "nor", "none", "nobody", "nothing"], "not"
    ),
    **dict.fromkeys(
        [
            "avoid",
            "avoiding",
            "stop",
            "stopping",
            "prevent",
            "preventing",
            "quit",
            "quitting",
            "overcome",
            "overcoming",
            "beat",
        ],
        "stop",
    ),
}
# a personal owner against everyone's (or a named owner on one side) changes whose thing it is;
# "my" against "your" does not: questions use "you" for anyone
_PERSONAL = frozenset(["my", "our", "your", "his", "her", "their"])
_EVERYONE = frozenset(["all", "every", "each", "everyone's", "everybody's"])
_CONTRACTED_IS = frozenset(
    ["it's", "that's", "what's", "who's", "where's", "how's", "there's", "here's", "he's", "she's", "let's"]
)
VERSION = "trap-guard:1"


def _words(text: str) -> list[str]:
    # "all time" is a span, not an owner
    return _WORD.findall(text.lower().replace("’", "'").replace("n't", " not").replace("all time", "time"))


def prefix_negation(wa: set[str], wb: set[str]) -> bool:
    """A word of one side is a negating prefix plus a word only the other side has."""
    for mine, other in ((wa, wb), (wb, wa)):
        for w in mine - other:
            for p in _PREFIXES:
                if w.startswith(p) and len(w) - len(p) >= 3 and w[len(p) :] in other - mine:
                    return True
    return False


def owners(words: Sequence[str]) -> set[str]:
    """Whose thing it is: "personal", "everyone", and each named ``X's`` owner."""
    out = {"personal" for w in words if w in _PERSONAL} | {"everyone" for w in words if w in _EVERYONE}
    out |= {w for w in words if w.endswith("'s") and w not in _CONTRACTED_IS and w not in _EVERYONE}
    return out


def trap(cached: str, query: str) -> str | None:
    """The trap found in the pair, or None."""
    a, b = _words(cached), _words(query)
    wa, wb = set(a), set(b)
    if prefix_negation(wa, wb):
        return "prefix_negation"
    if {_NEGATORS[w] for w in wa if w in _NEGATORS} != {_NEGATORS[w] for w in wb if w in _NEGATORS}:
        return "negation_differs"
    oa, ob = owners(a), owners(b)
    # a dropped "my" is mostly rewording ("improve my English" / "improve English"); everyone's
    # against one person's, or a named owner on one side only, is not
    named = (oa ^ ob) - {"personal", "everyone"}
    if named or ("everyone" in oa ^ ob and (oa | ob) & {"personal"}):
        return "owner_differs"
    return None


class TrapGuard:
    """A judge that refuses the pairs ``trap`` flags and passes the rest to the next judge."""

    def __init__(self) -> None:
        self.thresholds: dict[str, float] = {}

    @property
    def name(self) -> str:
        return VERSION

    def score(self, items: Sequence[JudgeItem]) -> list[float]:
        return [0.0 if trap(i.cached, i.query) else 1.0 for i in items]

    def threshold(self, domain: str) -> float:
        return domain_threshold(self.thresholds, domain, 0.5)

    def set_thresholds(self, thresholds: dict[str, float]) -> None:
        self.thresholds.update(thresholds)
