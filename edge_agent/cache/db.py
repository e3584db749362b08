"""SQLite connections for the caches: an extension-capable build with sqlite-vec loaded, in WAL mode.

The interpreter's own ``sqlite3`` cannot load extensions here, so ``pysqlite3`` (same DB-API) is
used. WAL with ``synchronous=NORMAL`` survives a killed process without losing a committed
transaction; only a power cut can drop the last few, never corrupt the file.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pysqlite3.dbapi2 as sqlite
import sqlite_vec

Connection = Any  # pysqlite3 ships no type information

IntegrityError: type[Exception] = sqlite.IntegrityError
OperationalError: type[Exception] = sqlite.OperationalError


def connect(path: Path | str, *, readonly: bool = False) -> Connection:
    """Open ``path`` (``":memory:"`` allowed) with sqlite-vec and the cache pragmas applied."""
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    target = f"file:{path}?mode=ro" if readonly else str(path)
    conn = sqlite.connect(target, uri=readonly, check_same_thread=False, isolation_level=None)
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    conn.execute("PRAGMA busy_timeout=5000")
    if not readonly:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class Database:
    """One connection guarded by a lock, shared by the stores of one cache file.

    The stores are called from the event loop and from the sync thread; SQLite connections are
    not safe to use from two threads at once, so every access goes through ``lock``.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self.conn: Connection = connect(path)
        self.lock = threading.RLock()
        self._closed = False

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """A write transaction: all or nothing, so a crash never leaves half an entry."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.lock:
            yield self.conn

    def integrity_ok(self) -> bool:
        with self.lock:
            row = self.conn.execute("PRAGMA integrity_check").fetchone()
        return bool(row and row[0] == "ok")

    def close(self) -> None:
        with self.lock:
            if self._closed:
                return
            self._closed = True
            self.conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
