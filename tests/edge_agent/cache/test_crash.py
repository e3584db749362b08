from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from edge_agent.cache.db import Database, connect
from edge_agent.cache.exact import ExactCache
from edge_agent.cache.semantic import SemanticCache
from edge_agent.cache.verifier import Verifier
from shared.embedding import Embedder

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from edge_agent.cache.embedding import load_embedder
    from edge_agent.cache.keys import CacheRequest
    from edge_agent.cache.service import CacheService
    from shared.config import CacheSettings
    from shared.wire import ChatMessage

    embedder = load_embedder(Path(sys.argv[2]))
    svc = CacheService(Path(sys.argv[1]), CacheSettings(max_entries=400), embedder=embedder)
    i = 0
    while True:
        msg = (ChatMessage(role="user", content=f"How many legs does creature number {i} have?"),)
        svc.store(CacheRequest(tenant=f"t{i % 3}", model="m", messages=msg), "answer " * (i % 50 + 1), "m")
        i += 1
    """
)


def _rows(path: Path) -> int:
    conn = connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM sem_entries").fetchone()[0])
    except Exception:
        return 0
    finally:
        conn.close()


def test_sigkill_during_a_write_burst_leaves_a_consistent_store(
    tmp_path: Path, models_dir: Path, embedder: Embedder
) -> None:
    db_path = tmp_path / "cache.db"
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db_path), str(models_dir)])
        try:
            deadline = time.monotonic() + 60
            target = 50 * (round_ + 1)
            while _rows(db_path) < target and time.monotonic() < deadline:
                assert proc.poll() is None, "writer died on its own"
                time.sleep(0.05)
            time.sleep(0.01 * round_)  # land the kill at a different point of a write each round
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        with Database(db_path) as db:
            assert db.integrity_ok()
            sem = SemanticCache(db, embedder, Verifier.load())
            rows, indexed = sem.count()
            assert rows >= target and rows == indexed
            with db.read() as conn:
                orphans = conn.execute(
                    "SELECT count(*) FROM sem_vec WHERE rowid NOT IN (SELECT id FROM sem_entries)"
                ).fetchone()[0]
                no_answer = conn.execute(
                    "SELECT count(*) FROM sem_entries e WHERE NOT EXISTS"
                    " (SELECT 1 FROM sem_answers a WHERE a.entry_id = e.id)"
                ).fetchone()[0]
                (real_n, real_bytes) = conn.execute(
                    "SELECT count(*), coalesce(sum(bytes), 0) FROM exact_entries"
                ).fetchone()
            assert orphans == 0 and no_answer == 0
            assert ExactCache(db).stats() == (real_n, real_bytes)  # trigger-kept counters in step
