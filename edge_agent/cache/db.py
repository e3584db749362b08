"""SQLite connections for the caches: an extension-capable build with sqlite-vec loaded, in WAL mode.

``shared.sqlite`` picks the extension-capable driver. WAL with ``synchronous=NORMAL`` survives a
killed process without losing a committed transaction; only a power cut can drop the last few,
never corrupt the file. Foreign keys are on, so deleting an entry deletes its answers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shared import sqlite

Connection = Any  # the driver may be pysqlite3, whose objects are not stdlib instances
VERSION_MAX_AGE_S = 0.005

# the driver's own classes: a stdlib ``sqlite3`` error class would not catch what pysqlite3 raises
IntegrityError: type[Exception] = sqlite.driver(extensions=True).IntegrityError
OperationalError: type[Exception] = sqlite.driver(extensions=True).OperationalError


def connect(path: Path | str, *, readonly: bool = False) -> Connection:
    """Open ``path`` (``":memory:"`` allowed) with sqlite-vec and the cache pragmas applied."""
    return sqlite.connect(path, synchronous="NORMAL", foreign_keys=True, vec=True, readonly=readonly)


class Database:
    """One writing connection guarded by a lock, shared by the stores of one cache file, and a
    read-only connection per thread for searches.

    The stores are called from the event loop, worker threads and the sync thread; SQLite
    connections are not safe to use from two threads at once, so every write goes through
    ``lock``. A search reads through ``snapshot`` instead: in WAL mode a reader sees the last
    committed state and never waits for a writer, so a lookup never queues behind a store.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self.conn: Connection = connect(path)
        self.lock = threading.RLock()
        self._closed = False
        self._local = threading.local()
        self._readers: list[Connection] = []
        # a second connection to ":memory:" would be another, empty database
        self._shared_reads = str(path) == ":memory:" or str(path).startswith("file::memory:")
        self._version: int | None = None  # ``foreign_version``'s last reading, and when
        self._version_at = 0.0

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """A write transaction: all or nothing, so a crash never leaves half an entry."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                # inside the try: a COMMIT the disk refuses (full, I/O error) must not leave the
                # transaction open for the next writer to trip over
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.lock:
            yield self.conn

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """This thread's read-only connection (the locked one for an in-memory database)."""
        if self._shared_reads:
            with self.read() as conn:
                yield conn
            return
        conn = getattr(self._local, "conn", None)
        if conn is None:
            with self.lock:
                if self._closed:
                    raise OperationalError("cache database is closed")
                conn = connect(self.path, readonly=True)
                self._readers.append(conn)
            self._local.conn = conn
        yield conn

    def foreign_version(self, *, wait: bool = True) -> int | None:
        """``PRAGMA data_version`` of the writing connection: it changes only when another
        connection (another process: this one writes through ``conn`` alone) commits to the file.
        Read at most once per ``VERSION_MAX_AGE_S`` (every lookup asks, and under load the pragma
        was a tenth of an exact lookup), so another process's commit is seen within that long.
        ``wait`` off: ``None`` at once while another thread holds the lock (a write in progress)."""
        now = time.monotonic()
        if self._version is not None and now - self._version_at < VERSION_MAX_AGE_S:
            return self._version
        if not self.lock.acquire(blocking=wait):
            return None
        try:
            self._version = int(self.conn.execute("PRAGMA data_version").fetchone()[0])
            self._version_at = now
            return self._version
        finally:
            self.lock.release()

    def integrity_ok(self) -> bool:
        with self.lock:
            row = self.conn.execute("PRAGMA integrity_check").fetchone()
        return bool(row and row[0] == "ok")

    def close(self) -> None:
        with self.lock:
            if self._closed:
                return
            self._closed = True
            for reader in self._readers:
                reader.close()
            self.conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
