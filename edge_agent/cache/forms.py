"""Which question forms the semantic stage may hold, so that a miss by form costs no SQLite read.

Every unique question misses the form lookup (``SemanticCache.lookup_form``), and before this
filter each miss paid two indexed reads (the entries, then the aliases) on the event loop. The
filter keeps the hash of every (scope, question form) ever stored as an entry or an alias; a form
that is not in it is in neither table, so the lookup answers the miss from memory. A form in it
goes on to the reads as before, which stay the only source of an answer.

A hash is only ever added, never removed: an evicted entry, or two forms whose hashes collide,
cost a read that finds nothing, never a hit. The filter is rebuilt from the file when another
process has committed to it (``PRAGMA data_version``, which ``HitAudit.refresh`` already reads),
so a writer this process does not know of cannot hide a form from it. About 70 bytes a form.
"""

from __future__ import annotations

from edge_agent.cache.db import Connection


class FormFilter:
    def __init__(self) -> None:
        self._keys: set[int] = set()

    def load(self, conn: Connection) -> int:
        """Rebuild from the entries and aliases ``conn`` sees; returns the forms held."""
        keys = {
            hash((str(scope), str(qform)))
            for scope, qform in conn.execute(
                "SELECT scope, qform FROM sem_entries UNION ALL SELECT scope, qform FROM sem_aliases"
            )
        }
        self._keys = keys  # one rebinding: a concurrent check sees the old set or the new one
        return len(keys)

    def add(self, scope: str, qform: str) -> None:
        """Before the write commits: a form that is about to exist may cost a read, never a miss."""
        self._keys.add(hash((scope, qform)))

    def may_hold(self, scope: str, qform: str) -> bool:
        return hash((scope, qform)) in self._keys

    def __len__(self) -> int:
        return len(self._keys)
