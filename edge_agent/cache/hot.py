"""The rows of the most recently read exact keys, so a repeated hit reads no SQLite at all.

A hit read its key's rows from SQLite every time: an indexed read, but with its statement, its
row objects and a hop out of the interpreter lock, a tenth of what a hit costs. ``HotRows`` keeps
the rows of the last ``capacity`` keys read, expiry included (a lookup still checks it).

Correctness rests on forgetting: the exact cache forgets a key after every commit that wrote it,
and everything after a commit that deleted other rows (eviction, a tenant's erasure), wrote hit
counts (a pool's rotation order), or came from another process. A read that raced a commit
cannot put stale rows back: rows are only kept when no forgetting happened while they were read
(``generation``).
"""

from __future__ import annotations

import threading
from typing import Any

Row = tuple[Any, ...]


class HotRows:
    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = capacity
        self._rows: dict[str, list[Row]] = {}
        self._lock = threading.Lock()
        self.generation = 0  # bumped by every forgetting

    def get(self, key: str) -> list[Row] | None:
        return self._rows.get(key)

    def keep(self, key: str, rows: list[Row], generation: int) -> None:
        """Remember ``rows``, read when ``generation`` was current, unless something was forgotten since."""
        with self._lock:
            if generation != self.generation:
                return
            if key not in self._rows and len(self._rows) >= self.capacity:
                self._rows.pop(next(iter(self._rows)))  # the oldest read goes first
            self._rows[key] = rows

    def forget(self, keys: list[str]) -> None:
        with self._lock:
            self.generation += 1
            for key in keys:
                self._rows.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._rows.clear()

    def __len__(self) -> int:
        return len(self._rows)
