"""How busy the event loop's thread is: indexing a miss only runs while serving leaves it room.

Indexing an answered miss into the semantic index costs the loop a little after the answer (the
hand-off to the spare-CPU embedder, the grey-candidate search, the write), and the spare process
some CPU of its own. Nobody waits for it, but on a loop that is already the bottleneck every
millisecond it takes is a millisecond less for serving: at full load it cost a third of the
throughput. So the stage asks ``LoopLoad`` first, and skips (sheds) the indexing of a miss while
the loop thread's own CPU time over the last window exceeds ``limit`` of the wall clock. The
exact entry is still stored; the question is indexed the next time it misses with room to spare.

The share is the thread's CPU time (``time.thread_time``, read on the loop thread itself), not
the process's: the spare embedder's child and the worker threads do not count, and a loop starved
of CPU by other work on the host reads as less busy, not more, so it never sheds for load it does
not itself carry.
"""

from __future__ import annotations

import time


class LoopLoad:
    """Call ``busy`` from the loop's thread; ``limit`` 1.0 never sheds."""

    def __init__(self, *, limit: float, window_s: float = 1.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self.share = 0.0  # the loop thread's CPU share over the last full window
        self._wall = time.monotonic()
        self._cpu = time.thread_time()

    def busy(self) -> bool:
        """Whether the last full window's share exceeds ``limit`` (False until a window has passed)."""
        if self.limit >= 1.0:
            return False
        now = time.monotonic()
        elapsed = now - self._wall
        if elapsed >= self.window_s:
            cpu = time.thread_time()
            self.share = (cpu - self._cpu) / elapsed
            self._wall, self._cpu = now, cpu
        return self.share > self.limit
