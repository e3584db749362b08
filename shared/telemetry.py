"""The telemetry event schema shared by the edge (producer) and the hub (store, evaluation).

On the wire an event is a flat ``dict[str, Scalar]`` keyed by attribute names: OpenTelemetry GenAI
semantic-convention names where one exists (``gen_ai.*``, ``error.type``), ``edgeroute.*``
otherwise. Flat attributes keep the link format stable when fields are added (an old hub keeps
unknown keys instead of rejecting the batch) and map one-to-one onto OTLP span attributes.
``TelemetryEvent`` is the typed view both sides build and validate with ``to_attributes`` /
``from_attributes``.
"""

from __future__ import annotations

import hashlib
import os
import time
from functools import lru_cache
from typing import Any, Final, Literal

import msgspec

from shared.wire import Scalar

EventKind = Literal["request", "feedback", "spool_drops"]

# field name -> attribute name; fields absent here are not attributes (``extra`` is spread instead)
ATTRIBUTE_NAMES: Final[dict[str, str]] = {
    "event_id": "edgeroute.event.id",
    "kind": "edgeroute.event.kind",
    "timestamp": "edgeroute.event.timestamp",
    "response_id": "gen_ai.response.id",
    "tenant": "edgeroute.tenant.hash",
    "user": "edgeroute.user.hash",
    "operation": "gen_ai.operation.name",
    "modality": "edgeroute.classification.modality",
    "task": "edgeroute.classification.task",
    "domain": "edgeroute.classification.domain",
    "route": "edgeroute.route",
    "route_forced": "edgeroute.route.forced",
    "cache_bypass": "edgeroute.cache.bypass",
    "request_model": "gen_ai.request.model",
    "response_model": "gen_ai.response.model",
    "input_tokens": "gen_ai.usage.input_tokens",
    "output_tokens": "gen_ai.usage.output_tokens",
    "ttft_s": "gen_ai.server.time_to_first_token",
    "latency_s": "gen_ai.server.request.duration",
    "finish_reason": "gen_ai.response.finish_reasons",
    "streamed": "edgeroute.streamed",
    "cost_usd": "edgeroute.cost.usd",
    "cache_similarity": "edgeroute.cache.similarity",
    "local_confidence": "edgeroute.local.confidence",
    "escalation_reason": "edgeroute.escalation.reason",
    "fallback": "edgeroute.fallback",
    "regeneration": "edgeroute.regeneration",
    "regenerate_flag": "edgeroute.regeneration.explicit",
    "regenerates": "edgeroute.regeneration.of",
    "error_type": "error.type",
    "quality_target": "edgeroute.quality.target",
    "policy_version": "edgeroute.policy.version",
    "canary": "edgeroute.policy.canary",
    "prompt": "gen_ai.input.messages",
    "completion": "gen_ai.output.messages",
    "reference": "edgeroute.eval.reference",
    "reference_kind": "edgeroute.eval.reference_kind",
    "rating": "edgeroute.feedback.rating",
    "dropped_events": "edgeroute.spool.dropped_events",
    "dropped_bytes": "edgeroute.spool.dropped_bytes",
}
FIELD_NAMES: Final[dict[str, str]] = {v: k for k, v in ATTRIBUTE_NAMES.items()}
_KIND: Final = ATTRIBUTE_NAMES["kind"]

# prompts and answers are opt-in content capture (OTel treats them the same way); cap their size
# so one long conversation cannot crowd the spool
MAX_CONTENT_CHARS: Final = 8000


def new_event_id() -> str:
    """32 hex digits, the millisecond first (as in UUIDv7): the spool's and the hub's unique
    index on it then grow at one end. Random ids rewrote a random index page per insert, which
    made a spool write cost 42 us an event instead of 15. The 80 random bits keep two edges'
    ids apart within a millisecond."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


class TelemetryEvent(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True):
    """One observation. ``kind`` says which fields are meaningful:

    - ``request``: one answered (or failed) request, with everything the router decided;
    - ``feedback``: a user rating (-1..1, or 1..5 mapped by the API) of ``response_id``;
    - ``spool_drops``: the edge's cumulative spool-drop counters, so the hub sees data loss.
    """

    event_id: str = msgspec.field(default_factory=new_event_id)
    kind: EventKind = "request"
    timestamp: float = msgspec.field(default_factory=time.time)
    response_id: str = ""
    tenant: str = ""
    user: str = ""
    operation: str = "chat"
    modality: str = "text"
    task: str = "other"
    domain: str = "general"
    route: str = ""
    # the client chose the route ("model", "header" or "body"; "" = the router did) or turned the
    # caches off: benchmark baselines, not routing decisions nor a user's re-asks
    route_forced: str = ""
    cache_bypass: bool = False
    request_model: str = ""
    response_model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    ttft_s: float | None = None
    latency_s: float | None = None
    finish_reason: str = ""
    streamed: bool = False
    cost_usd: float = 0.0
    cache_similarity: float | None = None
    local_confidence: float | None = None
    escalation_reason: str = ""
    fallback: bool = False
    regeneration: bool = False
    regenerate_flag: bool = False
    regenerates: str = ""  # response id of the answer this request re-asks
    error_type: str = ""
    quality_target: float | None = None
    policy_version: str = ""
    canary: bool = False
    prompt: str | None = None
    completion: str | None = None
    reference: str | None = None
    reference_kind: str = ""  # "gsm8k", "mcq", "code": which reference scorer applies
    rating: float | None = None
    dropped_events: int = 0
    dropped_bytes: int = 0
    # attributes this schema does not know yet; kept verbatim so nothing is lost across versions
    extra: dict[str, Scalar] = {}

    def to_attributes(self) -> dict[str, Scalar]:
        # ``to_builtins`` leaves out (in C) the fields still at their defaults, which keeps a cache
        # hit's event at a few hundred bytes; this runs once per answer. A value equal to its
        # default but not the same object may stay in: explicit, and read back the same.
        raw = msgspec.to_builtins(self)
        attrs: dict[str, Scalar] = dict(raw.pop("extra", ()))
        attrs[_KIND] = self.kind
        names = ATTRIBUTE_NAMES
        for name, value in raw.items():
            attrs[names[name]] = value
        return attrs

    @classmethod
    def from_attributes(cls, attrs: dict[str, Scalar]) -> TelemetryEvent:
        """Validate a wire dict; raises ``msgspec.ValidationError`` naming the bad attribute."""
        fields: dict[str, Any] = {}
        extra: dict[str, Scalar] = {}
        for key, value in attrs.items():
            field = FIELD_NAMES.get(key)
            if field is None:
                extra[key] = value
            else:
                fields[field] = value
        if "event_id" not in fields or not isinstance(fields["event_id"], str) or not fields["event_id"]:
            raise msgspec.ValidationError("missing attribute `edgeroute.event.id`")
        if extra:
            fields["extra"] = extra
        for content in ("prompt", "completion", "reference"):
            value = fields.get(content)
            if isinstance(value, str) and len(value) > MAX_CONTENT_CHARS:
                fields[content] = value[:MAX_CONTENT_CHARS]
        return msgspec.convert(fields, cls, strict=False)

    @property
    def is_cache_hit(self) -> bool:
        return self.route in ("exact_cache", "semantic_cache", "asset_reuse")

    @property
    def escalated(self) -> bool:
        return bool(self.escalation_reason)


def clip_content(text: str | None) -> str | None:
    """Content capture keeps the head of long texts: enough to judge, bounded in size."""
    if text is None:
        return None
    return text if len(text) <= MAX_CONTENT_CHARS else text[:MAX_CONTENT_CHARS]


@lru_cache(maxsize=4096)  # every request hashes its tenant and user, and the same few come back
def identity_hash(value: str, salt: str = "") -> str:
    """Tenants and users leave the edge only as salted hashes: stable for aggregation, not reversible."""
    if not value:
        return ""
    return hashlib.sha256(f"{salt}\x00{value}".encode()).hexdigest()[:16]
