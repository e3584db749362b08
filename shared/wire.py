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
    models: list[str] = []  # text models an Escalate may name
    # image and video models a MediaJob runs on, kept apart so chat never routes there
    media_models: list[str] = []


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
    """Hub → edges over PUB/SUB: versioned cache entries.

    A delta with no entries on the PUB socket announces a change meant for some edges only (an
    alias of one tenant's entry): every edge then asks the snapshot socket, which answers each
    with what is its own.
    """

    seq: int
    entries: list[dict[str, Scalar]]


class CacheSnapshotRequest(msgspec.Struct, tag="cache_snapshot_req", frozen=True):
    """Edge → hub snapshot socket: send every live entry changed after ``since`` (0 = all)."""

    since: int


class CacheSnapshotDone(msgspec.Struct, tag="cache_snapshot_done", frozen=True):
    """Ends a snapshot (after zero or more ``CacheDelta`` frames): the edge is now at ``seq``."""

    seq: int


class CacheJudgeRequest(msgspec.Struct, tag="cache_judge", frozen=True, omit_defaults=True):
    """Edge → hub, off the request path: may the answer cached for ``cached_question`` be served
    for ``question``? Sent for a grey-zone candidate the edge's verifier would not serve alone.

    ``tenant`` is the tenant *hash*; with ``family`` and ``sys_hash`` it scopes the alias an
    approval creates, which the hub then publishes to this edge only. ``cosine`` and
    ``probability`` are the edge's own similarity and verifier score, for the hub's records.
    """

    judge_id: str
    tenant: str
    family: str
    sys_hash: str
    question: str
    cached_question: str
    answer: str
    domain: str = "general"
    cosine: float = 0.0
    probability: float = 0.0


class CacheJudgeVerdict(msgspec.Struct, tag="cache_verdict", frozen=True, omit_defaults=True):
    """Hub → edge: the judge's verdict on one ``CacheJudgeRequest``. An approval arrives at the edge
    a second way, as an alias in the global-cache feed; ``remembered``: an earlier verdict on the
    same pair was reused, no judge ran."""

    judge_id: str
    approved: bool
    score: float = 0.0
    judge: str = ""
    remembered: bool = False


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


# --- images and video (cloud_hub.images.jobs; edge_agent.hub_link.media) ---------------------

MediaKind = Literal["image", "video"]


class MediaJob(msgspec.Struct, tag="media_job", frozen=True, omit_defaults=True):
    """Edge → hub: generate ``n`` images, answered by one ``MediaStatus`` when they are done, or a
    video, answered at once with the job queued (poll it with ``MediaPoll``).

    ``tenant`` and ``user`` are the edge's hashes of the authenticated tenant and its end user; the
    hub scopes assets by them *and* the edge's proven key. ``received`` names assets the edge
    handed this user from its own store, so the hub never hands them to the same user again.
    ``max_bytes`` is the largest frame the edge decodes (0: the hub's own limit).
    """

    request_id: str
    kind: MediaKind
    prompt: str
    deadline: float
    tenant: str = ""
    user: str = ""
    n: int = 1
    frames: int = 9
    width: int = 512
    height: int = 512
    steps: int = 0
    seed: int | None = None
    negative_prompt: str = ""
    reuse: str = "variation"
    model: str = ""
    max_bytes: int = 0
    received: list[str] = []


class MediaAsset(msgspec.Struct, frozen=True, omit_defaults=True):
    """One generated asset: what it is and cost, and its bytes inline when they fit the frame
    (else ``data`` is empty and the edge fetches ``size`` bytes with ``MediaFetch``)."""

    asset_id: str
    content_type: str  # image/png; a video is one animated PNG (image/apng)
    size: int
    sha256: str
    width: int
    height: int
    seed: int
    trace: TraceStep  # shared.images.trace_step of its ReuseTrace
    steps_total: int = 0
    steps_run: int = 0
    frames: int = 1
    data: bytes = b""


class MediaStatus(msgspec.Struct, tag="media_status", frozen=True, omit_defaults=True):
    """Hub → edge: a media job's state; ``assets`` once ``done``, ``error*`` once ``failed``."""

    request_id: str
    job_id: str
    kind: MediaKind
    state: Literal["queued", "running", "done", "failed"]
    model: str = ""
    assets: list[MediaAsset] = []
    cost_usd: float = 0.0
    error_code: str = ""
    error: str = ""
    error_param: str = ""


class MediaPoll(msgspec.Struct, tag="media_poll", frozen=True, omit_defaults=True):
    """Edge → hub: the state of a job this edge submitted (answered with ``MediaStatus``)."""

    request_id: str
    job_id: str
    max_bytes: int = 0  # as in ``MediaJob``: the most a ``done`` answer may carry inline


class MediaFetch(msgspec.Struct, tag="media_fetch", frozen=True):
    """Edge → hub: up to ``max_bytes`` of asset ``asset`` of a done job from ``offset`` on."""

    request_id: str
    job_id: str
    asset: int
    offset: int
    max_bytes: int


class MediaChunk(msgspec.Struct, tag="media_chunk", frozen=True):
    request_id: str
    job_id: str
    asset: int
    offset: int
    total: int
    data: bytes


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
    | CacheJudgeRequest
    | CacheJudgeVerdict
    | PolicyUpdate
    | TelemetryBatch
    | TelemetryAck
    | EnrolRequest
    | EnrolReply
    | MediaJob
    | MediaStatus
    | MediaPoll
    | MediaFetch
    | MediaChunk
)


class Envelope(msgspec.Struct, frozen=True):
    v: int
    body: Body
