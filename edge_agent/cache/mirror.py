"""In-memory copy of the semantic cache's sign bits, one packed matrix per partition.

sqlite-vec's bit scan costs about 30 ms at 100k rows from inside SQLite; the same Hamming scan
over packed ``uint64`` words in numpy (XOR, then ``bitwise_count``) takes a few milliseconds.
SQLite stays the source of truth: the mirror is rebuilt from ``sem_vec`` at start and changed
only after a write transaction has committed, so a crash can lose nothing the mirror knew and a
rolled-back write never reaches it. Only the bits live here (48 bytes a row at 384-d); the float
vectors for rescoring are read from SQLite by rowid for the few candidates the scan keeps.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from edge_agent.cache.db import Connection

Words = npt.NDArray[np.uint64]
Ids = npt.NDArray[np.int64]


def quantize(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """Sign bits packed exactly as ``vec_quantize_binary`` packs them (bit i of byte i // 8)."""
    return np.packbits(np.asarray(vectors) > 0, axis=-1, bitorder="little")


class _Partition:
    """Rows of one scope in growable arrays; removal swaps the last row into the gap.

    Bits are stored word-major (``bits[w]`` is word ``w`` of every row), so each step of the scan
    is one contiguous pass over memory.
    """

    def __init__(self, words: int) -> None:
        self.n = 0
        self.ids: Ids = np.zeros(64, dtype=np.int64)
        self.bits: Words = np.zeros((words, 64), dtype=np.uint64)
        self.pos: dict[int, int] = {}

    def add(self, entry_id: int, bits: Words) -> None:
        if entry_id in self.pos:
            self.bits[:, self.pos[entry_id]] = bits
            return
        if self.n == len(self.ids):
            grow = max(64, self.n)
            self.ids = np.concatenate([self.ids, np.zeros(grow, dtype=np.int64)])
            self.bits = np.concatenate([self.bits, np.zeros((self.bits.shape[0], grow), dtype=np.uint64)], 1)
        self.ids[self.n] = entry_id
        self.bits[:, self.n] = bits
        self.pos[entry_id] = self.n
        self.n += 1

    def remove(self, entry_id: int) -> None:
        i = self.pos.pop(entry_id, None)
        if i is None:
            return
        last = self.n - 1
        if i != last:
            moved = int(self.ids[last])
            self.ids[i] = moved
            self.bits[:, i] = self.bits[:, last]
            self.pos[moved] = i
        self.n = last

    def distances(self, query: Words) -> npt.NDArray[np.uint16]:
        n = self.n
        dist: npt.NDArray[np.uint16] = np.bitwise_count(self.bits[0, :n] ^ query[0]).astype(np.uint16)
        for w in range(1, len(query)):
            dist += np.bitwise_count(self.bits[w, :n] ^ query[w])
        return dist

    def nearest(self, query: Words, k: int) -> Ids:
        """Ids of the ``k`` rows with the fewest differing bits (ties at the cut-off: lowest rows)."""
        if self.n <= k:
            return self.ids[: self.n].copy()
        dist = self.distances(query)
        # distances are small integers, so a histogram finds the cut-off faster than a partial sort
        cut = int(np.searchsorted(np.cumsum(np.bincount(dist)), k))
        below = np.flatnonzero(dist < cut)
        at = np.flatnonzero(dist == cut)[: k - len(below)]
        picked: Ids = self.ids[np.concatenate([below, at])]
        return picked


class BitMirror:
    """Thread-safe: the event loop searches while the sync thread applies hub deltas."""

    def __init__(self, dim: int) -> None:
        if dim % 64:
            raise ValueError(f"the bit mirror needs a dimension divisible by 64, got {dim}")
        self.dim = dim
        self.words = dim // 64
        self._parts: dict[str, _Partition] = {}
        self._scope_of: dict[int, str] = {}
        self._lock = threading.Lock()

    def _words(self, packed: bytes | npt.NDArray[np.uint8]) -> Words:
        raw = np.frombuffer(packed, dtype=np.uint8) if isinstance(packed, bytes) else packed
        if raw.size != self.dim // 8:
            raise ValueError(f"expected {self.dim // 8} bytes of bits, got {raw.size}")
        return np.ascontiguousarray(raw).view(np.uint64)

    def load(self, conn: Connection) -> int:
        """Replace the contents with what ``sem_vec`` holds; returns the row count."""
        with self._lock:
            self._parts.clear()
            self._scope_of.clear()
            for entry_id, scope, bits in conn.execute("SELECT rowid, scope, bits FROM sem_vec"):
                self._add(int(entry_id), str(scope), self._words(bits))
            return len(self._scope_of)

    def _add(self, entry_id: int, scope: str, words: Words) -> None:
        old = self._scope_of.get(entry_id)
        if old is not None and old != scope:
            self._parts[old].remove(entry_id)
        part = self._parts.get(scope)
        if part is None:
            part = self._parts[scope] = _Partition(self.words)
        part.add(entry_id, words)
        self._scope_of[entry_id] = scope

    def add(self, entry_id: int, scope: str, vector: npt.NDArray[np.float32]) -> None:
        words = self._words(quantize(vector))
        with self._lock:
            self._add(entry_id, scope, words)

    def remove(self, entry_ids: Iterable[int]) -> None:
        with self._lock:
            for entry_id in entry_ids:
                scope = self._scope_of.pop(entry_id, None)
                if scope is not None:
                    self._parts[scope].remove(entry_id)

    def search(self, scopes: Iterable[str], query: npt.NDArray[np.float32], k: int) -> list[int]:
        """Candidate ids: the ``k`` nearest by Hamming distance in each of ``scopes``."""
        words = self._words(quantize(query))
        out: list[int] = []
        with self._lock:
            for scope in scopes:
                part = self._parts.get(scope)
                if part is not None:
                    out.extend(part.nearest(words, k).tolist())
        return out

    def __len__(self) -> int:
        with self._lock:
            return len(self._scope_of)
