"""What an image or video request is and what it is answered with, as the edge sees them.

``MediaAsk`` is a validated request, ``MediaAnswer`` the assets that answer it, each an ``Item``
with its reuse trace; ``media_event`` is the request's one telemetry event (operation
``image_generation`` or ``video_generation``) with route, cost and steps. The exceptions are the
ways a request fails that the API maps to its own error bodies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from edge_agent.hub_link.errors import HubLinkError, HubRefused
from edge_agent.hub_link.media import Fetched
from edge_agent.images.store import MediaKind, StoredAsset
from edge_agent.tenancy import RequestContext
from shared.images import ReuseMode
from shared.taxonomy import Route
from shared.telemetry import TelemetryEvent
from shared.wire import Scalar, TraceStep

RETRY_AFTER_S = 5


class MediaUnavailable(Exception):
    """The hub is needed and cannot be had now (unreachable, overloaded, failed): retry later."""

    def __init__(self, message: str, retry_after_s: int = RETRY_AFTER_S) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class MediaNotFound(LookupError):
    """No such asset or video job for this tenant."""


class MediaNotReady(Exception):
    """A video's content was asked for before the job completed."""


@dataclass(frozen=True)
class MediaAsk:
    """A validated request; ``user`` is the body's end-user id as sent (hashed before use)."""

    prompt: str
    width: int
    height: int
    n: int = 1
    frames: int = 1
    steps: int = 0
    seed: int | None = None
    negative_prompt: str = ""
    reuse: ReuseMode = "variation"
    model: str = ""  # the hub model named; "" for the hub's default
    request_model: str = ""  # what the client sent, for telemetry
    user: str = ""


@dataclass(frozen=True)
class Item:
    asset_id: str
    data: bytes
    content_type: str
    width: int
    height: int
    seed: int
    steps_total: int
    steps_run: int
    trace: TraceStep

    @property
    def reused(self) -> bool:
        return self.trace.decision == "hit"


@dataclass(frozen=True)
class MediaAnswer:
    kind: MediaKind
    items: list[Item]
    model: str
    cost_usd: float
    trace: tuple[TraceStep, ...] = field(default=())

    @property
    def route(self) -> Route:
        """``asset_reuse`` as soon as anything was reused, else the hub's generation."""
        return Route.ASSET_REUSE if any(i.reused for i in self.items) else Route.HUB_OSS

    def edgeroute_field(self) -> dict[str, Any]:
        total = sum(i.steps_total for i in self.items)
        run = sum(i.steps_run for i in self.items)
        return {
            "route": self.route.value,
            "modality": self.kind,
            "model": self.model,
            "cost_usd": self.cost_usd,
            "steps_total": total,
            "steps_run": run,
            "steps_skipped": total - run,
            "assets": [_summary(i) for i in self.items],
            "trace": [_step_dict(s) for s in self.trace],
        }


def _summary(item: Item) -> dict[str, Any]:
    d = item.trace.detail
    return {
        "asset_id": item.asset_id,
        "reused": item.reused,
        "kind": d.get("kind", ""),
        "where": d.get("where", ""),
        "source_asset_id": d.get("source_asset_id") or None,
        "similarity": d.get("similarity"),
        "distance": d.get("distance"),
        "steps_total": item.steps_total,
        "steps_run": item.steps_run,
        "steps_skipped": item.steps_total - item.steps_run,
        "chunks": d.get("chunks", 0),
    }


def _step_dict(step: TraceStep) -> dict[str, Any]:
    return {
        "stage": step.stage,
        "decision": step.decision,
        "reason": step.reason,
        "elapsed_ms": step.elapsed_ms,
        "detail": dict(step.detail),
    }


@contextlib.contextmanager
def hub_errors() -> Iterator[None]:
    """Refusals stay (the client's request is wrong); every other link failure means retry later."""
    try:
        yield
    except HubRefused:
        raise
    except HubLinkError as exc:
        raise MediaUnavailable(f"the hub could not serve this now: {exc}") from exc


def store_step(ask: MediaAsk, local: int) -> TraceStep:
    """The edge store's hop: how much of the request it answered (only ``exact_ok`` may)."""
    wanted = ask.n if ask.frames == 1 else 1
    decision: Literal["hit", "partial", "miss", "skip"]
    if ask.reuse != "exact_ok":
        decision = "skip"
    else:
        decision = "hit" if local >= wanted else "partial" if local else "miss"
    return TraceStep(
        stage="asset_store", decision=decision, reason=ask.reuse, detail={"local": local, "wanted": wanted}
    )


def local_item(a: StoredAsset) -> Item:
    trace = TraceStep(
        stage="asset_reuse",
        decision="hit",
        reason="exact",
        detail={
            "where": "edge",
            "kind": "exact",
            "source_asset_id": a.id,
            "similarity": 1.0,
            "steps_total": a.steps_total,
            "steps_run": 0,
            "steps_skipped": a.steps_total,
        },
    )
    return Item(a.id, a.data, a.content_type, a.width, a.height, a.seed, a.steps_total, 0, trace)


def hub_item(f: Fetched) -> Item:
    m = f.meta
    trace = msgspec.structs.replace(m.trace, detail={**m.trace.detail, "where": "hub", "chunks": f.chunks})
    return Item(
        m.asset_id, f.data, m.content_type, m.width, m.height, m.seed, m.steps_total, m.steps_run, trace
    )


def media_event(
    response_id: str,
    ctx: RequestContext,
    ask: MediaAsk,
    kind: MediaKind,
    answer: MediaAnswer | None,
    latency_s: float,
    error: BaseException | None = None,
    user: str | None = None,
) -> TelemetryEvent:
    """The request's telemetry event; ``user`` is the user hash when the ask no longer has it."""
    extra: dict[str, Scalar] = {"edgeroute.media.reuse": ask.reuse}
    if answer is not None:
        summary = answer.edgeroute_field()
        extra |= {
            "edgeroute.media.count": len(answer.items),
            "edgeroute.media.reused": sum(1 for i in answer.items if i.reused),
            "edgeroute.media.steps_total": summary["steps_total"],
            "edgeroute.media.steps_run": summary["steps_run"],
        }
    return TelemetryEvent(
        response_id=response_id,
        tenant=ctx.tenant_hash,
        user=ctx.user_hash(ask.user) if user is None else user,
        operation=f"{kind}_generation",
        modality=kind,
        route=answer.route.value if answer is not None else "",
        request_model=ask.request_model,
        response_model=answer.model if answer is not None else "",
        latency_s=latency_s,
        cost_usd=answer.cost_usd if answer is not None else 0.0,
        error_type=type(error).__name__ if error is not None else "",
        extra=extra,
    )
