"""The edge's single entry point for telemetry: metrics, regeneration detection, spooling.

The request path calls ``record`` once per request and ``feedback`` for ``POST /v1/feedback``; both
only touch memory and the local spool, so a slow or absent hub never slows a request.

On an event loop the spool writes leave the loop: events queue in memory and one writer task stores
everything queued in one transaction, in a worker thread. The writer lets a batch build up for
``linger_s`` (cut short by ``max_batch`` events or a ``drain``): about ten commits a second at 1,300
cache hits a second, where each loop turn's handful of events used to make one. The thread's SQLite
work runs beside the loop on a vCPU that may share its physical core, and slows it
(docs/architecture.md, "What a miss costs"). ``drain`` waits until every event recorded so far is in
the spool (the pipeline's drain and the app's shutdown call it), and ``close`` writes what is still
queued before it closes the spool. Called with no loop running, ``record`` writes before it returns.
Until its batch commits an event is only in memory: a ``kill -9`` in those milliseconds (at most
``linger_s`` plus one write) loses it, as it would lose an answer whose bookkeeping had not yet run.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque

import msgspec

from edge_agent.telemetry.metrics import EdgeMetrics
from edge_agent.telemetry.regeneration import RegenerationDetector
from edge_agent.telemetry.spool import TelemetrySpool
from shared.telemetry import TelemetryEvent, clip_content

log = logging.getLogger(__name__)


class FeedbackError(ValueError):
    """A feedback call the API must answer with 400."""


class TelemetryRecorder:
    def __init__(
        self,
        spool: TelemetrySpool,
        metrics: EdgeMetrics | None = None,
        regeneration: RegenerationDetector | None = None,
        capture_content: bool = False,
        linger_s: float = 0.02,
        max_batch: int = 256,
    ) -> None:
        self.spool = spool
        self.linger_s = linger_s
        self.max_batch = max_batch
        self.metrics = metrics or EdgeMetrics()
        self.regeneration = regeneration or RegenerationDetector()
        # prompts and answers leave the device only when the operator opts in (evaluation needs
        # them for the judge; reference checks need only the answer and the reference)
        self.capture_content = capture_content
        self._queued: deque[TelemetryEvent] = deque()
        # held while a batch goes from the queue into the spool, so that ``close`` cannot close
        # the spool under a batch already taken off the queue
        self._writing = threading.Lock()
        self._writer: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None  # set while the writer lingers
        self._draining = 0
        self._closed = False

    def record(self, event: TelemetryEvent, prompt: str | None = None) -> TelemetryEvent:
        """Enrich, count and spool one request event; returns the event as spooled.

        ``prompt`` (the last user turn) feeds the near-duplicate check even when content capture
        is off; it is not stored unless ``capture_content`` is set.
        """
        changes: dict[str, object] = {}
        text = prompt if prompt is not None else event.prompt
        # a forced route that also bypasses the caches is a baseline asking each tier the same
        # question on purpose: unless it says it is a regeneration, it is neither checked against
        # earlier asks nor remembered for later ones. A user who only forces a route, or only
        # bypasses the cache for a fresh answer, still re-asks like anyone.
        baseline = event.cache_bypass and bool(event.route_forced) and not event.regenerate_flag
        if event.kind == "request" and text is not None and not baseline:
            verdict = self.regeneration.check(
                event.user or event.tenant, text, event.response_id, explicit=event.regenerate_flag
            )
            if verdict.regeneration and not event.regeneration:
                changes["regeneration"] = True
            if verdict.regenerates and not event.regenerates:
                changes["regenerates"] = verdict.regenerates
        if self.capture_content:
            if event.prompt is None and prompt is not None:
                changes["prompt"] = clip_content(prompt)
            elif event.prompt is not None:
                changes["prompt"] = clip_content(event.prompt)
            changes["completion"] = clip_content(event.completion)
        elif event.reference is not None:
            # probe traffic with a known answer is synthetic: its answer is kept for the check
            changes["prompt"] = None
        elif event.prompt is not None or event.completion is not None:
            changes["prompt"] = None
            changes["completion"] = None
        if changes:
            event = msgspec.structs.replace(event, **changes)
        self.metrics.observe(event)
        self._store(event)
        return event

    def feedback(self, response_id: str, rating: float, tenant: str = "", user: str = "") -> TelemetryEvent:
        """A user's rating of an earlier answer, in [-1, 1] (the API maps thumbs and 1–5 stars)."""
        if not response_id or len(response_id) > 200:
            raise FeedbackError("response_id must be a non-empty string of at most 200 characters")
        if not -1.0 <= rating <= 1.0:
            raise FeedbackError("rating must be between -1 and 1")
        event = TelemetryEvent(
            kind="feedback",
            response_id=response_id,
            rating=rating,
            tenant=tenant,
            user=user,
            operation="feedback",
        )
        self.metrics.observe(event)
        self._store(event)
        return event

    def refresh_spool_metrics(self) -> None:
        self.metrics.observe_spool(self.spool.stats())

    async def drain(self) -> None:
        """Wait until every event recorded so far has been written to the spool (or failed to be)."""
        self._draining += 1
        try:
            while (writer := self._writer) is not None and not writer.done():
                if writer.get_loop() is not asyncio.get_running_loop():
                    break
                self._hurry()
                # ``wait``, not ``await``: a caller that is cancelled must not cancel the writer
                await asyncio.wait({writer})
        finally:
            self._draining -= 1
        if self._queued:  # left by a writer that gave up, or one on another loop
            await asyncio.to_thread(self._write_queued)

    def close(self) -> None:
        """Write what is still queued, then close the spool."""
        self._closed = True
        self._write_queued()
        self.spool.close()

    def _store(self, event: TelemetryEvent) -> None:
        if self._closed:
            self.spool.append(event)  # raises: the spool is closed, as the caller must hear
            return
        self._queued.append(event)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_queued()  # no loop to keep free: the caller waits for the disk
            return
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write(), name="telemetry spool writer")
        elif len(self._queued) >= self.max_batch:
            self._hurry()

    async def _write(self) -> None:
        # what arrives while a batch is being written goes into the next one
        while self._queued:
            await self._linger()
            try:
                await asyncio.to_thread(self._write_queued)
            except Exception:
                # the batch is lost (as one event was, when each was written alone); anything
                # queued since waits for the next record, ``drain`` or ``close``
                log.exception("telemetry spool write failed")
                return

    async def _linger(self) -> None:
        """Let the batch grow for ``linger_s``, unless it is full or someone is draining."""
        if self.linger_s <= 0 or self._draining or len(self._queued) >= self.max_batch:
            return
        loop = asyncio.get_running_loop()
        self._wake = wake = loop.create_future()
        timer = loop.call_later(self.linger_s, _settle, wake)
        try:
            await wake
        finally:
            timer.cancel()
            self._wake = None

    def _hurry(self) -> None:
        wake = self._wake
        if wake is not None and wake.get_loop() is asyncio.get_running_loop():
            _settle(wake)

    def _write_queued(self) -> None:
        with self._writing:
            batch: list[TelemetryEvent] = []
            while self._queued:
                batch.append(self._queued.popleft())
            if batch:
                self.spool.append_many(batch)


def _settle(wake: asyncio.Future[None]) -> None:
    if not wake.done():
        wake.set_result(None)
