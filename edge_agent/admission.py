"""Overload protection: a bounded number of requests per route, the next one refused at once.

A saturated edge used to queue everything: 24 concurrent 200-token requests waited a median 100 s
for the one local model, none refused. Each route now has a ``Gate`` that admits at most
``limit`` holders (those the route runs at once plus a short queue behind them) and refuses the
next one immediately with ``Overloaded``, which the API turns into a 429 (local model) or 503
(hub link) with ``Retry-After``. A gate never waits and keeps no state beyond its counters, so it
recovers the moment holders leave, without a restart.

The local gate is held for a whole local run (draft and rest); the backend's own worker queue
orders the admitted runs. The hub gate is held while an escalation is on the link. The media
gate is held by image requests while they are on the hub and by video jobs until the hub reports
them ended; it refuses with a 429, since images have no other route to overflow to.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, runtime_checkable

from shared.config import AdmissionSettings

LOCAL = "edge_local"
HUB = "hub"
MEDIA = "hub_media"
_MAX_RETRY_AFTER_S = 60
_SMOOTHING = 0.2  # weight of the newest hold in the running mean


class Releasable(Protocol):
    def release(self) -> None: ...


@runtime_checkable
class SupportsConcurrency(Protocol):
    """A backend that says how many generations it runs at once (llama.cpp: one)."""

    @property
    def concurrency(self) -> int: ...


class Overloaded(Exception):
    """A route is at its bound. ``status`` is what the client gets: 429 when the local model is
    the saturated part, 503 when the hub link is (or no route is left to take the request)."""

    def __init__(self, route: str, status: int, retry_after_s: int, message: str) -> None:
        super().__init__(message)
        self.route = route
        self.status = status
        self.retry_after_s = retry_after_s
        self.message = message

    def as_status(self, status: int) -> Overloaded:
        return Overloaded(self.route, status, self.retry_after_s, self.message)


@dataclass
class Gate:
    """At most ``limit`` holders; ``concurrency`` of them are served at once, the rest wait."""

    route: str
    limit: int
    concurrency: int = 1
    status: int = 429
    held: int = 0
    refused: int = 0
    admitted: int = 0
    mean_hold_s: float | None = field(default=None)

    def admit(self) -> Slot:
        if self.held >= self.limit:
            self.refused += 1
            raise Overloaded(
                self.route,
                self.status,
                self.retry_after_s(),
                f"{self.route} is at its limit of {self.limit} requests in progress",
            )
        self.held += 1
        self.admitted += 1
        return Slot(self)

    def retry_after_s(self) -> int:
        """Whole seconds until a place is likely free. A full gate serves its holders in turn, so
        one leaves about every mean hold time / holders (each held its place through the queue)."""
        per_hold = 1.0 if self.mean_hold_s is None else self.mean_hold_s
        wait = per_hold / max(1, self.held)
        return max(1, min(_MAX_RETRY_AFTER_S, math.ceil(wait)))

    def _release(self, held_s: float) -> None:
        self.held -= 1
        mean = self.mean_hold_s
        self.mean_hold_s = held_s if mean is None else mean + _SMOOTHING * (held_s - mean)


class Slot:
    """One admitted holder; leaving the ``with`` block (or ``release``) frees the place once."""

    def __init__(self, gate: Gate) -> None:
        self._gate = gate
        self._since = time.perf_counter()
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._gate._release(time.perf_counter() - self._since)

    def __enter__(self) -> Slot:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class _Open:
    """The slot of a route without a bound."""

    def release(self) -> None:
        return None

    def __enter__(self) -> _Open:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class Admission:
    """The gates of one agent; a route without a gate admits everything."""

    def __init__(self, local: Gate | None = None, hub: Gate | None = None, media: Gate | None = None) -> None:
        self.local_gate = local
        self.hub_gate = hub
        self.media_gate = media

    @classmethod
    def from_settings(cls, settings: AdmissionSettings, backend: object) -> Admission:
        """Gates sized for ``backend``: its concurrency plus ``local_queue`` (default four per
        concurrent run: about four runs' wait at most) for the local model."""
        if not settings.enabled:
            return cls()
        concurrency = backend.concurrency if isinstance(backend, SupportsConcurrency) else 1
        queue = 4 * concurrency if settings.local_queue is None else settings.local_queue
        local = Gate(LOCAL, concurrency + queue, concurrency, status=429)
        hub = Gate(HUB, settings.hub_in_flight, settings.hub_in_flight, status=503)
        media = Gate(MEDIA, settings.media_in_flight, settings.media_in_flight, status=429)
        return cls(local, hub, media)

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Each bounded route's places in use, its limit and how many it refused so far."""
        gates = [g for g in (self.local_gate, self.hub_gate, self.media_gate) if g is not None]
        return {g.route: {"in_progress": g.held, "limit": g.limit, "refused": g.refused} for g in gates}

    def local(self, *, fallback: bool = False) -> Slot | _Open:
        """A place at the local gate. On the ``fallback`` path the hub could not take the request
        either, so a refusal there is a 503."""
        if self.local_gate is None:
            return _Open()
        try:
            return self.local_gate.admit()
        except Overloaded as exc:
            if fallback:
                raise exc.as_status(503) from None
            raise

    def hub(self) -> tuple[Slot | _Open | None, str]:
        """A place at the hub gate, or ``None`` and why the hub cannot be asked now."""
        if self.hub_gate is None:
            return _Open(), ""
        try:
            return self.hub_gate.admit(), ""
        except Overloaded as exc:
            return None, f"{exc.message}: answering locally"

    def media(self) -> Slot | _Open:
        """A place at the media gate, or ``Overloaded`` (429) when image and video work is full."""
        return _Open() if self.media_gate is None else self.media_gate.admit()
