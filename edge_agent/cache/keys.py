"""What a cached answer is keyed on, and which requests may use the semantic cache.

The tenant comes from the authenticated request context, never from the body, and is folded into
every key and every vector partition, so two tenants can never share an entry by accident.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Generic, TypeVar, overload

import msgspec

from shared.cache_text import (
    digest,
    is_personal,
    is_time_sensitive,
    model_family,
    normalize_text,
    system_hash,
    tenant_hash,
)
from shared.wire import ChatMessage, SamplingParams

# Standalone questions longer than this are pasted documents or code: embeddings truncate them,
# so two different long inputs can embed alike. Only the exact cache serves them.
MAX_SEMANTIC_CHARS = 600

_canon = msgspec.json.Encoder(order="sorted")

T = TypeVar("T")


class once(Generic[T]):  # lower case: a decorator, like the ``cached_property`` it replaces
    """``functools.cached_property`` without its lock: Python 3.11 takes one on every first read,
    and each request reads about ten of these once. The value lands in the instance's dict, which
    a frozen dataclass leaves writable, so later reads never reach this descriptor. Two threads
    reading one at once may both compute it: every one here is a pure function of the request."""

    def __init__(self, fn: Callable[[Any], T]) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> once[T]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> T | once[T]:
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.fn(obj)
        return value


@dataclass(frozen=True)
class CacheRequest:
    """The parts of a chat request that decide whether a stored answer fits it."""

    tenant: str
    model: str
    messages: tuple[ChatMessage, ...]
    params: SamplingParams = field(default_factory=SamplingParams)
    tools: Any = None  # the request's tool/function spec, JSON-compatible
    domain: str = "general"
    # a rewrite of a multi-turn follow-up into one self-contained question, when the pipeline has one
    standalone: str | None = None
    now: float = field(default_factory=time.time)

    # derived once per request: the lookup and the store of one request share this object
    @once
    def family(self) -> str:
        return model_family(self.model)

    @property
    def system_prompts(self) -> list[str]:
        return [m.content for m in self.messages if m.role in ("system", "developer")]

    @once
    def sys_hash(self) -> str:
        return system_hash(self.system_prompts)

    @property
    def conversation(self) -> list[ChatMessage]:
        return [m for m in self.messages if m.role not in ("system", "developer")]

    @property
    def last_user(self) -> str:
        for m in reversed(self.messages):
            if m.role == "user":
                return m.content
        return ""

    @once
    def time_sensitive(self) -> bool:
        return any(is_time_sensitive(m.content) for m in self.conversation if m.role == "user")

    @once
    def tenant_scope(self) -> str:
        return tenant_hash(self.tenant)

    @once
    def eligibility(self) -> Eligibility:
        """``semantic_eligibility`` of this request, worked out once."""
        return semantic_eligibility(self)

    @once
    def shape(self) -> str:
        """``answer_shape`` of this request's sampling parameters."""
        return answer_shape(self.params)

    @once
    def _exact_keys(self) -> dict[float, str]:
        return {}

    @once
    def raw_identity(self) -> tuple[object, ...]:
        """Everything ``exact_key`` reads but the clock, as sent: equal for two requests exactly
        alike, so the work of normalising and hashing one can stand for the other."""
        tools = _canon.encode(self.tools) if self.tools is not None else None
        return (self.tenant, self.model, self.messages, _canon.encode(self.params), tools)

    def exact_key(self, time_bucket_s: float) -> str:
        """``exact_key`` of this request, worked out once for its lookup and its store."""
        memo = self._exact_keys
        key = memo.get(time_bucket_s)
        if key is None:
            key = memo[time_bucket_s] = exact_key(self, time_bucket_s=time_bucket_s)
        return key

    @once
    def partition_hash(self) -> str:
        """The system prompt and the answer's shape: what a semantic partition is filed under
        besides tenant and family (also the ``sys_hash`` the hub's judge files an alias under,
        so an approved alias lands in the partition it was judged for)."""
        return digest("partition", self.sys_hash, self.shape)[:32]

    @once
    def own_scope(self) -> str:
        """The semantic partition of this tenant, model family, system prompt and answer shape."""
        return semantic_scope(self.tenant_scope, self.family, self.partition_hash)

    @once
    def shared_scope(self) -> str:
        """The partition of the hub's shared answers for the same family and system prompt, or
        one that holds nothing when a shared answer may not fit this request's shape."""
        if not shared_answers_fit(self.params):
            return semantic_scope(NO_SHARED, self.family, self.sys_hash)
        return semantic_scope(GLOBAL_TENANT, self.family, self.sys_hash)


def time_bucket(now: float, bucket_s: float) -> int:
    return int(now // bucket_s)


def exact_key(req: CacheRequest, *, time_bucket_s: float = 3600.0) -> str:
    """Digest of everything that can change the answer; time-sensitive requests also get the hour."""
    sampling = _sampling_fields(req.params)
    convo = [[m.role, m.name or "", normalize_text(m.content)] for m in req.conversation]
    bucket = time_bucket(req.now, time_bucket_s) if req.time_sensitive else -1
    tools = _tools_digest(_canon.encode(req.tools).decode() if req.tools is not None else "")
    return digest(
        "exact-v1",
        req.tenant_scope,
        req.family,
        req.sys_hash,
        tools,
        _canon.encode(sampling).decode(),
        _canon.encode(convo).decode(),
        str(bucket),
    )


@lru_cache(maxsize=256)  # the same few tool specs come with every request of an application
def _tools_digest(tools: str) -> str:
    return digest("tools", tools)


def _sampling_fields(p: SamplingParams) -> dict[str, Any]:
    return {
        "max_tokens": p.max_tokens,
        "temperature": round(p.temperature, 4),
        "top_p": round(p.top_p, 4),
        "stop": sorted(p.stop),
        "seed": p.seed,
    }


def answer_shape(p: SamplingParams) -> str:
    """Digest of the sampling parameters that change which answer a question gets: its length
    limit and stop sequences always; temperature, top_p and seed only when sampling (greedy
    decoding ignores them). Answers are only reused between requests of one shape."""
    fields = _sampling_fields(p)
    if p.temperature <= 0.0:
        fields = {"max_tokens": fields["max_tokens"], "stop": fields["stop"], "greedy": True}
    return digest("shape", _canon.encode(fields).decode())[:32]


# A hub answer is shared only once it ended by itself ("stop") at greedy or seeded decoding, but
# the edge is not told its length: it is served to requests that stop at no sequence of their own
# and allow at least this many tokens (a paragraph), so a request for a few words never gets one.
# A shared answer longer than this can still reach a request that allows fewer tokens than it has.
SHARED_MIN_MAX_TOKENS = 128


def shared_answers_fit(p: SamplingParams) -> bool:
    return not p.stop and p.max_tokens >= SHARED_MIN_MAX_TOKENS


def semantic_scope(tenant_scope: str, family: str, sys_hash: str) -> str:
    """The vec0 partition: one per tenant, model family and system prompt."""
    return digest("scope", tenant_scope, family, sys_hash)[:32]


GLOBAL_TENANT = "*global*"
# the tenant of a partition no entry is filed under: the shared scope of a request no shared
# answer fits
NO_SHARED = "*no-shared*"


@dataclass(frozen=True)
class Eligibility:
    ok: bool
    reason: str
    question: str = ""


def semantic_eligibility(req: CacheRequest) -> Eligibility:
    """Only standalone, impersonal, timeless questions without tools may match by meaning."""
    if req.tools is not None or any(m.role == "tool" for m in req.messages):
        return Eligibility(False, "tool_calling")
    convo = req.conversation
    if not convo or convo[-1].role != "user":
        return Eligibility(False, "no_user_turn")
    if len(convo) > 1:
        if req.standalone is None:
            return Eligibility(False, "follow_up_without_rewrite")
        question = req.standalone
    else:
        question = convo[-1].content
    question = normalize_text(question)
    if not question:
        return Eligibility(False, "empty")
    if len(question) > MAX_SEMANTIC_CHARS:
        return Eligibility(False, "too_long")
    if is_personal(question):
        return Eligibility(False, "personal")
    if req.time_sensitive or is_time_sensitive(question):
        return Eligibility(False, "time_sensitive")
    return Eligibility(True, "eligible", question)
