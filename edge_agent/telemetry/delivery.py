"""Moves spooled events to the hub in batches, at least once.

A batch leaves the spool only when the hub's ``TelemetryAck`` names it, which the hub sends after
its store committed the events; any error, timeout or mismatched ack puts the batch back and the
loop backs off (capped exponential), so a hub outage of any length only grows the spool. A
failure that is the batch's own (the hub refused it, or it could not be encoded into a frame)
uses up a try of its rows instead, so the spool can isolate and quarantine a poison event
rather than retry it ahead of everything else for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from edge_agent.hub_link.errors import HubError, HubTimeout
from edge_agent.telemetry.metrics import EdgeMetrics
from edge_agent.telemetry.spool import SpoolStats, TelemetrySpool
from shared.telemetry import TelemetryEvent
from shared.wire import TelemetryAck, TelemetryBatch

log = logging.getLogger(__name__)


class TelemetryTransport(Protocol):
    """What the hub link offers the deliverer (``edge_agent.hub_link``'s ``HubLink``)."""

    async def send_telemetry(self, batch: TelemetryBatch, timeout: float) -> TelemetryAck: ...


class TelemetryDeliverer:
    def __init__(
        self,
        spool: TelemetrySpool,
        transport: TelemetryTransport,
        metrics: EdgeMetrics | None = None,
        *,
        interval_s: float = 1.0,
        timeout_s: float = 5.0,
        max_events: int = 256,
        max_bytes: int = 1024 * 1024,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.spool = spool
        self.transport = transport
        self.metrics = metrics
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_backoff_s = max_backoff_s
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._reported_drops = -1

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="telemetry-delivery")

    def nudge(self) -> None:
        """Deliver now instead of at the next interval (e.g. after a burst)."""
        self._wake.set()

    async def deliver_once(self) -> int:
        """Send one batch; returns events acknowledged (0 when idle). Raises on failure."""
        stats = self._report_drops()
        lease = await asyncio.to_thread(self.spool.lease, self.max_events, self.max_bytes)
        if lease is None:
            return 0
        backlog = max(0, stats.pending_events - stats.in_flight_events - len(lease.events))
        batch = TelemetryBatch(lease.batch_id, lease.events, backlog)
        try:
            ack = await asyncio.wait_for(
                self.transport.send_telemetry(batch, self.timeout_s), self.timeout_s + 1.0
            )
        except BaseException as exc:
            if _batch_at_fault(exc):
                await asyncio.to_thread(self.spool.fail, lease.batch_id)
            else:
                await asyncio.to_thread(self.spool.release, lease.batch_id)
            raise
        if ack.batch_id != lease.batch_id or ack.accepted != len(lease.events):
            await asyncio.to_thread(self.spool.release, lease.batch_id)
            raise RuntimeError(f"hub acknowledged {ack.batch_id}/{ack.accepted}, sent {lease.batch_id}")
        removed = await asyncio.to_thread(self.spool.ack, lease.batch_id)
        if self.metrics is not None:
            self.metrics.delivered.inc(removed)
        return removed

    def _report_drops(self) -> SpoolStats:
        stats = self.spool.stats()
        if self.metrics is not None:
            self.metrics.observe_spool(stats)
        if stats.dropped_events > max(self._reported_drops, 0):
            # cumulative counters: the hub keeps the maximum per edge, so re-sends are harmless
            self.spool.append(
                TelemetryEvent(
                    kind="spool_drops",
                    operation="telemetry",
                    dropped_events=stats.dropped_events,
                    dropped_bytes=stats.dropped_bytes,
                )
            )
        self._reported_drops = stats.dropped_events
        return stats

    async def drain(self, deadline_s: float = 10.0) -> bool:
        """Deliver until the spool is empty or ``deadline_s`` passes; True when empty."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        while loop.time() < end:
            try:
                if await self.deliver_once() == 0:
                    return True
            except Exception as exc:
                log.debug("telemetry drain attempt failed: %s", exc)
                await asyncio.sleep(min(0.2, max(end - loop.time(), 0)))
        return self.spool.stats().pending_events == 0

    async def _run(self) -> None:
        backoff = 0.0
        while True:
            try:
                sent = await self.deliver_once()
                backoff = 0.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                sent = 0
                backoff = min(max(backoff * 2, self.interval_s / 4), self.max_backoff_s)
                if self.metrics is not None:
                    self.metrics.delivery_failures.labels(type(exc).__name__).inc()
                log.info("telemetry delivery failed (%s); retrying in %.1fs", exc, backoff)
            if sent:
                continue  # more may be waiting; a backlog drains at link speed
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), backoff or self.interval_s)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _batch_at_fault(exc: BaseException) -> bool:
    """A failure the same batch would meet again on a healthy link: not an outage or a timeout."""
    if isinstance(exc, HubError):
        return not exc.retryable and not isinstance(exc, HubTimeout)
    # encoding errors: a value no frame can carry
    return isinstance(exc, OverflowError | TypeError | ValueError) and not isinstance(exc, TimeoutError)
