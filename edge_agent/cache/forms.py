"""In-memory filters of what a cache file may hold, so that a miss costs no SQLite read.

Every unique request misses the exact read and the semantic form lookup, and before these filters
each miss paid indexed reads on the event loop for it. A filter keeps the hash of every key ever
stored (``KeyFilter``: the exact cache's keys; ``FormFilter``: each (scope, question form) stored as
an entry or an alias); a key that is not in it is not in the file, so the lookup answers the miss
from memory. A key in it goes on to the reads as before, which stay the only source of an answer.

A hash is only ever added, never removed: an evicted entry, or two keys whose hashes collide, cost
a read that finds nothing, never a hit. A filter is rebuilt from the file when another process has
committed to it (``Database.foreign_version``), so a writer this process does not know of cannot
hide a key from it. About 70 bytes a key.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from edge_agent.cache.db import Connection


class KeyFilter:
    def __init__(self) -> None:
        self._keys: set[int] = set()
        self.version: int | None = None  # the file's foreign version the keys were loaded at

    def replace(self, keys: Iterable[Hashable], version: int | None = None) -> int:
        """Hold exactly ``keys``; returns how many."""
        fresh = {hash(k) for k in keys}
        self._keys = fresh  # one rebinding: a concurrent check sees the old set or the new one
        self.version = version
        return len(fresh)

    def add(self, key: Hashable) -> None:
        """Before the write commits: a key that is about to exist may cost a read, never a miss."""
        self._keys.add(hash(key))

    def may_hold(self, key: Hashable) -> bool:
        return hash(key) in self._keys

    def __len__(self) -> int:
        return len(self._keys)


class FormFilter(KeyFilter):
    """(scope, question form) of the semantic stage's entries and aliases."""

    def load(self, conn: Connection) -> int:
        """Rebuild from the entries and aliases ``conn`` sees; returns the forms held."""
        rows = conn.execute(
            "SELECT scope, qform FROM sem_entries UNION ALL SELECT scope, qform FROM sem_aliases"
        )
        return self.replace((str(scope), str(qform)) for scope, qform in rows)

    def add_form(self, scope: str, qform: str) -> None:
        self.add((scope, qform))

    def may_hold_form(self, scope: str, qform: str) -> bool:
        return self.may_hold((scope, qform))
