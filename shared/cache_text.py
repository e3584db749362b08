"""Text rules that the edge caches and the hub's global cache must agree on.

Both sides hash questions and decide whether a question is safe to share; if they disagreed, an
edge could look up a key the hub never publishes, or the hub could share a personal question.
The delta entry format (``GlobalEntry``) lives here for the same reason.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

import msgspec

from shared.wire import Scalar

_TRAILING_PUNCT = re.compile(r"[\s?!.。？！]+$")

# Both rules below are matched against the lowered text, not with IGNORECASE: an alternation
# tried at every position ran 3.5x slower case-insensitively, and every request's cache key asks.
# First-person possessives and requests about the user: the answer depends on who asks.
_PERSONAL = re.compile(r"\b(my|mine|our|ours|myself|ourselves|about me|for me|remember me|i am|i'm|im)\b")
# Words whose answer changes with the clock: such requests need a time bucket and never share.
_TIME_SENSITIVE = re.compile(
    r"\b(today|tonight|tomorrow|yesterday|now|right now|currently|current|latest|recent|recently|"
    r"this (?:week|month|year|morning|evening)|next (?:week|month|year)|last (?:week|month|night)|"
    r"weather|forecast|news|headlines|stock price|share price|exchange rate|score|live|"
    r"what time|what day|what date)\b"
)


def normalize_text(text: str) -> str:
    """Unicode-fold and collapse whitespace; case and punctuation inside the text are kept."""
    # ``split()`` breaks at exactly the characters a regex ``\s`` matches (``str.isspace``), and
    # the join needs no strip: the text a substitution of ``\s+`` and a strip gave, twice as fast
    return " ".join(unicodedata.normalize("NFKC", text).split())


def question_form(text: str) -> str:
    """Looser form for question identity: case-folded, trailing punctuation dropped."""
    return _TRAILING_PUNCT.sub("", normalize_text(text)).casefold()


def digest(*parts: str) -> str:
    """Stable hex digest of several strings (length-prefixed so boundaries cannot collide)."""
    buf = bytearray()  # one hash call over the whole: the same digest as one update per piece
    for part in parts:
        raw = part.encode("utf-8")
        buf += len(raw).to_bytes(8, "big")
        buf += raw
    return hashlib.sha256(buf).hexdigest()


@lru_cache(maxsize=4096)  # a handful of tenants, asked about on every request
def tenant_hash(tenant: str) -> str:
    """What leaves the edge instead of a tenant name."""
    return digest("tenant", tenant)[:32]


def system_hash(system_prompts: Iterable[str]) -> str:
    return _system_hash(tuple(system_prompts))


@lru_cache(maxsize=1024)  # most traffic carries one of a few system prompts
def _system_hash(system_prompts: tuple[str, ...]) -> str:
    return digest("system", *(normalize_text(s) for s in system_prompts))[:32]


@lru_cache(maxsize=1024)
def model_family(model: str) -> str:
    """Answers are only reused within one model family; a quantisation or tag does not matter."""
    name = model.strip().lower()
    name = name.split(":", 1)[0]
    for suffix in ("-gguf", "-hf", "-q4_k_m", "-q4_1", "-q8_0", "-f16"):
        name = name.removesuffix(suffix)
    return name or "default"


def is_personal(text: str) -> bool:
    return _PERSONAL.search(text.lower()) is not None


def is_time_sensitive(text: str) -> bool:
    return _TIME_SENSITIVE.search(text.lower()) is not None


def is_generic(text: str) -> bool:
    """A question whose answer could be shown to anyone, at any time."""
    return bool(text.strip()) and not is_personal(text) and not is_time_sensitive(text)


def global_key(question: str, family: str, sys_hash: str) -> str:
    """Identity of a question in the hub's global cache."""
    return digest("global", family, sys_hash, question_form(question))[:40]


def alias_key(edge: str, tenant: str, question: str, family: str, sys_hash: str) -> str:
    """Identity of an alias: one question of one tenant of one edge, under a family and system."""
    return digest("alias", edge, tenant, family, sys_hash, question_form(question))[:40]


class GlobalEntry(msgspec.Struct, frozen=True):
    """One item of a ``CacheDelta``: put or delete a shared answer or an alias.

    ``kind`` "answer": an answer shared with every tenant. "alias": a question the hub's judge
    found the ``answer`` right for, visible to one ``tenant`` (its hash) of the edge that asked.
    """

    key: str
    op: str  # "put" | "delete"
    question: str = ""
    answer: str = ""
    family: str = ""
    sys_hash: str = ""
    domain: str = "general"
    version: int = 0  # the hub sequence number that last changed this key
    kind: str = "answer"  # "answer" | "alias"
    tenant: str = ""  # aliases: the tenant hash it belongs to

    def to_wire(self) -> dict[str, Scalar]:
        return {f: getattr(self, f) for f in self.__struct_fields__}

    @classmethod
    def from_wire(cls, raw: dict[str, Scalar]) -> GlobalEntry:
        """Validate one delta entry; a malformed one raises ``msgspec.ValidationError``."""
        entry = msgspec.convert(raw, cls)
        if entry.op not in ("put", "delete"):
            raise msgspec.ValidationError(f"unknown cache op {entry.op!r}")
        if entry.kind not in ("answer", "alias") or (entry.kind == "alias" and not entry.tenant):
            raise msgspec.ValidationError(f"cache entry kind {entry.kind!r} (an alias needs a tenant)")
        return entry
