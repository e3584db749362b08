"""The one SQLite opener, on real files: the pragmas each store asks for are the ones in force."""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

import pytest

from shared.sqlite import connect, driver


def _pragma(conn: sqlite3.Connection, name: str) -> object:
    row = conn.execute(f"PRAGMA {name}").fetchone()
    return row[0]


def test_defaults_are_wal_normal_and_a_five_second_wait(tmp_path: Path) -> None:
    conn = connect(tmp_path / "nested" / "dir" / "a.db")
    try:
        assert (tmp_path / "nested" / "dir" / "a.db").exists()
        assert _pragma(conn, "journal_mode") == "wal"
        assert _pragma(conn, "synchronous") == 1  # NORMAL
        assert _pragma(conn, "busy_timeout") == 5000
        assert _pragma(conn, "foreign_keys") == 0
        assert conn.isolation_level is None  # the stores write their own BEGIN IMMEDIATE
    finally:
        conn.close()


def test_each_store_gets_its_own_values(tmp_path: Path) -> None:
    conn = connect(tmp_path / "b.db", synchronous="FULL", foreign_keys=True, busy_timeout_ms=1234)
    try:
        assert _pragma(conn, "synchronous") == 2  # FULL
        assert _pragma(conn, "foreign_keys") == 1
        assert _pragma(conn, "busy_timeout") == 1234
        conn.executescript(
            "CREATE TABLE parent(id INTEGER PRIMARY KEY);"
            "CREATE TABLE child(pid INTEGER NOT NULL REFERENCES parent(id) ON DELETE CASCADE);"
            "INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1);"
        )
        conn.execute("DELETE FROM parent")
        assert conn.execute("SELECT COUNT(*) FROM child").fetchone()[0] == 0
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO child VALUES (7)")
    finally:
        conn.close()


def test_unknown_synchronous_level_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        connect(tmp_path / "c.db", synchronous="NORMAL; DROP TABLE x")  # type: ignore[arg-type]


def test_vec_loads_only_when_asked(tmp_path: Path) -> None:
    plain = connect(tmp_path / "plain.db")
    try:
        with pytest.raises(sqlite3.OperationalError, match="no such function"):
            plain.execute("SELECT vec_version()")
    finally:
        plain.close()
    conn = connect(tmp_path / "vec.db", vec=True, foreign_keys=True)
    try:
        assert str(conn.execute("SELECT vec_version()").fetchone()[0]).startswith("v")
        conn.execute("CREATE VIRTUAL TABLE v USING vec0(embedding float[2])")
        for rowid, vec in ((1, (1.0, 0.0)), (2, (0.0, 1.0))):
            conn.execute("INSERT INTO v(rowid, embedding) VALUES (?, ?)", (rowid, struct.pack("2f", *vec)))
        nearest = conn.execute(
            "SELECT rowid FROM v WHERE embedding MATCH ? ORDER BY distance LIMIT 1",
            (struct.pack("2f", 0.1, 0.9),),
        ).fetchone()[0]
        assert nearest == 2
        # still the extension-capable driver's connection, with the same pragmas as any other
        assert isinstance(conn, driver(extensions=True).Connection)
        assert _pragma(conn, "journal_mode") == "wal" and _pragma(conn, "foreign_keys") == 1
    finally:
        conn.close()


def test_a_second_connection_reads_while_the_first_commits(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    writer = connect(path, busy_timeout_ms=200)
    reader = connect(path, readonly=True, busy_timeout_ms=200)
    try:
        writer.execute("CREATE TABLE t(x INTEGER)")
        writer.execute("INSERT INTO t VALUES (1)")
        assert reader.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 1
        reader.execute("BEGIN")
        assert reader.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 1
        # an open read transaction would block this commit in rollback-journal mode; WAL lets it in
        writer.execute("INSERT INTO t VALUES (2)")
        assert reader.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 1  # its snapshot holds
        reader.execute("COMMIT")
        assert reader.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 2
        assert (tmp_path / "shared.db-wal").exists()
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.execute("INSERT INTO t VALUES (3)")
    finally:
        reader.close()
        writer.close()


def test_readonly_does_not_create_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError):
        connect(tmp_path / "absent" / "x.db", readonly=True)
    assert not (tmp_path / "absent").exists()
