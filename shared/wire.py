"""Typed structs that cross the edge ↔ hub link.

Every frame is one ``Envelope``; its ``body`` is a tagged union, so the decoder validates the
message kind and every field type before any handler sees it. Add a message by adding a struct
with a new ``tag`` to ``Body``: old peers reject it with a typed ``DecodeFailure`` instead of
misreading it, and the ``v`` field lets either side refuse a protocol it does not speak.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import msgspec

Scalar = str | int | float | bool | None


class TraceStep(msgspec.Struct, frozen=True, omit_defaults=True):
    """One hop of the route trace: what the router considered and why it went on or stopped."""

    stage: str  # a Route value, or a pipeline stage such as "classify" / "policy"
    decision: str  # "hit", "miss", "answer", "escalate", "skip", "error", "fallback", ...
    reason: str = ""
    elapsed_ms: float = 0.0
    detail: dict[str, Scalar] = {}


class ChatMessage(msgspec.Struct, frozen=True, omit_defaults=True):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str
    name: str | None = None


class SamplingParams(msgspec.Struct, frozen=True, omit_defaults=True):
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    stop: list[str] = []
    seed: int | None = None


class Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Classification(msgspec.Struct, frozen=True, omit_defaults=True):
    modality: str = "text"
    task: str = "other"
    domain: str = "general"
    # predicted probability that each tier answers correctly, keyed by Tier value
    success: dict[str, float] = {}


# --- messages ---------------------------------------------------------------------------------


class Hello(msgspec.Struct, tag="hello", frozen=True):
    agent_version: str
    models: list[str] = []


class Ready(msgspec.Struct, tag="ready", frozen=True):
    hub_version: str
    heartbeat_s: float
    models: list[str] = []


class Heartbeat(msgspec.Struct, tag="heartbeat", frozen=True):
    """An edge's ping, echoed by the hub; ``from_hub`` marks the hub's own beat, sent unasked so
    an edge whose uplink is busy with large frames still hears from it (older peers ignore it)."""

    sent_at: float
    from_hub: bool = False


class Escalate(msgspec.Struct, tag="escalate", frozen=True, omit_defaults=True):
    """Edge → hub: answer this request. ``deadline`` is a wall-clock epoch in seconds."""

    request_id: str
    model: str
    messages: list[ChatMessage]
    params: SamplingParams
    deadline: float
    stream: bool = False
    draft: str | None = None  # the edge's local answer, when it made one
    confidence: float | None = None
    classification: Classification | None = None
    quality_target: float | None = None
    tenant: str = ""  # tenant *hash* for accounting; hub authenticates the edge, not the tenant
    # the model family the edge files this chat question under; empty: never share the answer
    cache_family: str = ""
    # the request asked for no caching at all: the hub neither offers nor serves a cached answer
    cache_bypass: bool = False


class Reply(msgspec.Struct, tag="reply", frozen=True, omit_defaults=True):
    request_id: str
    text: str
    model: str
    route: str
    finish_reason: str = "stop"
    usage: Usage = Usage()
    cost_usd: float = 0.0
    trace: list[TraceStep] = []


class ReplyChunk(msgspec.Struct, tag="chunk", frozen=True, omit_defaults=True):
    """One streamed delta; the stream ends with a ``Reply`` carrying usage and trace.

    ``route`` names the tier producing the deltas, so the edge can put it in the response headers
    before the final ``Reply`` says it again ("" from a hub that predates the field); ``model``
    likewise names the model, so every chunk the client sees can carry it from the first on.
    """

    request_id: str
    seq: int
    delta: str
    route: str = ""
    model: str = ""


class Cancel(msgspec.Struct, tag="cancel", frozen=True):
    """Edge → hub: the caller went away; stop work on ``request_id`` (no reply follows)."""

    request_id: str


class Error(msgspec.Struct, tag="error", frozen=True, omit_defaults=True):
    request_id: str
    code: str  # "bad_frame", "unsupported_version", "deadline_exceeded", "backend_error", ...
    message: str
    retryable: bool = False


class CacheDelta(msgspec.Struct, tag="cache_delta", frozen=True):
    """Hub → edges over PUB/SUB: versioned cache entries (the global cache issue fills this)."""

    seq: int
    entries: list[dict[str, Scalar]]


class CacheSnapshotRequest(msgspec.Struct, tag="cache_snapshot_req", frozen=True):
    """Edge → hub snapshot socket: send every live entry changed after ``since`` (0 = all)."""

    since: int


class CacheSnapshotDone(msgspec.Struct, tag="cache_snapshot_done", frozen=True):
    """Ends a snapshot (after zero or more ``CacheDelta`` frames): the edge is now at ``seq``."""

    seq: int


class PolicyUpdate(msgspec.Struct, tag="policy", frozen=True, omit_defaults=True):
    """Hub → edge: the routing policy in force, from the canary controller's ``policy.json``.

    Sent after ``Ready`` and again whenever the file changes. ``threshold`` replaces the edge's
    confidence threshold; while a canary runs, the ``canary_share`` of requests that ``assign``
    picks use ``canary_threshold`` and report ``canary_version`` in their telemetry.
    """

    version: str
    threshold: float
    canary_version: str | None = None
    canary_threshold: float | None = None
    canary_share: float = 0.0

    def assign(self, key: str) -> tuple[str, float, bool]:
        """(version, threshold, is_canary) for a request key; the same key always lands in the
        same arm (the hub's ``CanaryController.assign`` buckets keys the same way)."""
        if self.canary_version is not None and self.canary_threshold is not None:
            bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
            if bucket < self.canary_share:
                return self.canary_version, self.canary_threshold, True
        return self.version, self.threshold, False


class TelemetryBatch(msgspec.Struct, tag="telemetry", frozen=True):
    batch_id: str
    events: list[dict[str, Scalar]]
    # events left in the edge's spool behind this batch, so the hub sees a backlog growing while
    # it is still receiving; None from edges that predate the field
    backlog: int | None = None


class TelemetryAck(msgspec.Struct, tag="telemetry_ack", frozen=True):
    batch_id: str
    accepted: int


class EnrolRequest(msgspec.Struct, tag="enrol", frozen=True, omit_defaults=True):
    """Edge → the hub's enrolment socket only: redeem an invite for the key this connection's CURVE
    handshake proved. The key is never a payload field, so a token cannot enrol someone else's key."""

    invite_id: str
    secret: str
    agent_version: str = ""


class EnrolReply(msgspec.Struct, tag="enrolled", frozen=True, omit_defaults=True):
    """Hub → edge: the key is on the allow-list as ``edge_id`` (``already``: it was before)."""

    edge_id: str
    name: str = ""
    hub_version: str = ""
    already: bool = False


Body = (
    Hello
    | Ready
    | Heartbeat
    | Escalate
    | Reply
    | ReplyChunk
    | Cancel
    | Error
    | CacheDelta
    | CacheSnapshotRequest
    | CacheSnapshotDone
    | PolicyUpdate
    | TelemetryBatch
    | TelemetryAck
    | EnrolRequest
    | EnrolReply
)


class Envelope(msgspec.Struct, frozen=True):
    v: int
    body: Body
