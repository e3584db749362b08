"""Whether serving leaves the event loop room: indexing a miss only runs while it does.

Indexing an answered miss into the semantic index costs the loop a little after the answer (the
hand-off to the spare-CPU embedder, the grey-candidate search, the write), and the host the
embedding itself. Nobody waits for it, but on an edge whose loop is already behind, every
millisecond it takes is a millisecond less for serving: at full load it cost a third of the
throughput. So the stage asks ``LoopLag`` first, and skips (sheds) the indexing of a miss while
work waits for the loop: the exact entry is still stored, and the question is indexed the next
time it misses with room to spare.

"Spare" CPU is not free either: on this project's two-core hosts a pure-Python loop ran 40% slower
while the idle-class embedder worked on the *other* core (the two share a physical core or its
memory path), so an edge asked for 150 unique questions a second at concurrency 1 lost 2 ms of
p50 to indexing every one. So the indexer also paces itself (``index_max_per_s``, 20 a second:
about a tenth of a core here, and 72,000 questions an hour); a burst above it waits in its queue.

The signal is the loop's lag: a heartbeat every ``interval_s`` notes how late it ran, and the
lag is a moving average of that. It reads how long ready work waits for the loop whatever keeps
the loop from it, whether its own requests or a host whose CPU is taken (where the spare-CPU
embedder would get nothing either). The loop's own CPU share read only the first, and on a
two-core host shared with the load the loop never reached a high share while requests queued.
"""

from __future__ import annotations

import asyncio
import contextlib

SMOOTHING = 0.3  # weight of the newest heartbeat: the average forgets within about half a second


class LoopLag:
    """Call ``busy`` from the loop; ``limit_ms`` None never sheds. ``close`` stops the heartbeat."""

    def __init__(self, *, limit_ms: float | None, interval_s: float = 0.05) -> None:
        self.limit_ms = limit_ms
        self.interval_s = interval_s
        self.lag_ms = 0.0  # moving average of how late the heartbeat ran
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._closed = False

    def busy(self) -> bool:
        """Whether work waits for the loop longer than ``limit_ms`` (False until the heartbeat
        has run: the first call starts it)."""
        if self.limit_ms is None or self._closed:
            return False
        if self._handle is None:
            self._schedule(asyncio.get_running_loop())
        return self.lag_ms > self.limit_ms

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._due = loop.time() + self.interval_s
        self._handle = loop.call_at(self._due, self._beat, loop)

    def _beat(self, loop: asyncio.AbstractEventLoop) -> None:
        late_ms = max(0.0, loop.time() - self._due) * 1000.0
        self.lag_ms += SMOOTHING * (late_ms - self.lag_ms)
        if not self._closed:
            self._schedule(loop)

    def close(self) -> None:
        """Stop the heartbeat; idempotent (a loop that already closed has dropped it)."""
        self._closed = True
        if self._handle is not None:
            with contextlib.suppress(RuntimeError):
                self._handle.cancel()
            self._handle = None
