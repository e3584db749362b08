"""Opening SQLite files the way every store here wants them: WAL, chosen durability, no surprises.

All stores share one shape: one connection per file, used from the event loop and from worker
threads behind the store's own lock (hence ``check_same_thread=False``), and transactions written
out explicitly with ``BEGIN IMMEDIATE`` (hence autocommit, ``isolation_level=None``). WAL lets
readers in other processes (a CLI inspecting a live cache, a crash test) see committed writes while
the owner keeps writing. ``synchronous`` is the one real choice: ``NORMAL`` survives a killed
process and can lose only the last transactions to a power cut, ``FULL`` cannot lose an
acknowledged one.

Loading sqlite-vec needs a build that allows extensions; many Pythons (this project's included)
ship a ``sqlite3`` that does not, so ``pysqlite3`` (same DB-API, its own SQLite) is preferred for
those connections. Stores without extensions keep the interpreter's typed ``sqlite3``.
"""

from __future__ import annotations

import importlib
import sqlite3
from pathlib import Path
from types import ModuleType
from typing import Literal, cast, get_args

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


def driver(*, extensions: bool) -> ModuleType:
    """The DB-API module for a connection; the module's error classes are the ones it raises."""
    if not extensions:
        return sqlite3
    try:
        return importlib.import_module("pysqlite3.dbapi2")
    except ImportError:
        if hasattr(sqlite3.Connection, "enable_load_extension"):
            return sqlite3
        raise RuntimeError(
            "loading SQLite extensions needs pysqlite3-binary (the `edge` extra) "
            "or a Python whose sqlite3 was built with extension loading"
        ) from None


def connect(
    path: Path | str,
    *,
    synchronous: Synchronous = "NORMAL",
    foreign_keys: bool = False,
    busy_timeout_ms: int = 5000,
    vec: bool = False,
    readonly: bool = False,
) -> sqlite3.Connection:
    """Open ``path`` (``":memory:"`` allowed) in WAL mode with the given pragmas.

    ``vec`` loads sqlite-vec. ``readonly`` opens an existing file for reading only; it leaves the
    journal mode and ``synchronous`` alone, which belong to writers. A ``Path``'s folder is made.
    """
    if synchronous not in get_args(Synchronous):  # it is spliced into a PRAGMA, so never free text
        raise ValueError(f"unknown synchronous level {synchronous!r}")
    if isinstance(path, Path) and not readonly:
        path.parent.mkdir(parents=True, exist_ok=True)
    target = f"file:{path}?mode=ro" if readonly else str(path)
    module = driver(extensions=vec)
    # pysqlite3's Connection has the stdlib API but no type information, so it is typed as the stdlib's
    conn = cast(
        sqlite3.Connection,
        module.connect(
            target,
            uri=readonly,
            check_same_thread=False,
            isolation_level=None,
            timeout=busy_timeout_ms / 1000,
        ),
    )
    try:
        if vec:
            import sqlite_vec

            conn.enable_load_extension(True)
            sqlite_vec.load(conn)
            conn.enable_load_extension(False)
        # set before the WAL switch, which itself may have to wait for another process's lock
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        if not readonly:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
    except BaseException:
        conn.close()
        raise
    return conn
