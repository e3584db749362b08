"""T1 (kill -9 during writes) and T4 (hot-journal hygiene): what a crash leaves on disk is whole.

T1 runs ``crash_child writer`` and kills it with SIGKILL after a random number of acknowledged
commits, round after round on the same files. After every kill the files must pass
``integrity_check``, hold every row the child acknowledged, hash-verify every stored answer, and
keep the vector index and the semantic table the same size (one transaction writes both).

T4 checks the code never deletes or renames a ``-wal``/``-shm`` file nor copies a live database
(static), and that reopening every edge store after a kill keeps the hot WAL (runtime).
"""

from __future__ import annotations

import ast
import hashlib
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.cache.db import Database
from edge_agent.reliability import crash_child
from edge_agent.telemetry.spool import TelemetrySpool
from shared.paths import REPO_ROOT
from shared.reliability import Report, Result, Size, pick

T1_NAME = "kill -9 during cache writes and spool appends"
T4_NAME = "hot-journal hygiene"


class LineReader:
    """Reads a child's stdout in a thread, so the parent can wait with a timeout and kill at once."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self._out = proc.stdout
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self._out:
            for raw in self._out:
                if raw.endswith(b"\n"):  # a line cut by the kill was never acknowledged
                    self.lines.put(raw.decode(errors="replace").strip())
        self.lines.put(None)

    def get(self, timeout_s: float) -> str | None:
        try:
            return self.lines.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def rest(self, timeout_s: float = 10.0) -> list[str]:
        """Every line still in the pipe, up to the child's end of output."""
        self._thread.join(timeout_s)
        out: list[str] = []
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return out
            if line is None:
                return out
            out.append(line)


def child(*args: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "edge_agent.reliability.crash_child", *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO_ROOT)


@dataclass
class Acks:
    cache: set[int] = field(default_factory=set)
    spool: set[int] = field(default_factory=set)

    def take(self, line: str) -> None:
        kind, _, n = line.partition(" ")
        if kind == "c" and n.isdigit():
            self.cache.add(int(n))
        elif kind == "s" and n.isdigit():
            self.spool.add(int(n))


@dataclass
class Audit:
    integrity: bool
    cache_missing: int
    bad_hashes: int
    sem_rows: int
    vec_rows: int
    spool_missing: int


def audit(cache_db: Path, spool_db: Path, acks: Acks) -> Audit:
    with Database(cache_db) as db:
        ok = db.integrity_ok()
        with db.read() as conn:
            rows = conn.execute("SELECT answer, answer_hash FROM exact_entries").fetchall()
            (sem,) = conn.execute("SELECT count(*) FROM sem_entries").fetchone()
            (vec,) = conn.execute("SELECT count(*) FROM sem_vec").fetchone()
    stored = {h for _, h in rows}
    bad = sum(hashlib.sha256(a.encode()).hexdigest() != h for a, h in rows)
    wanted = {hashlib.sha256(crash_child.answer(i).encode()).hexdigest() for i in acks.cache}
    conn = sqlite3.connect(spool_db)
    try:
        ok = ok and conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ids = {str(r[0]) for r in conn.execute("SELECT event_id FROM events")}
    finally:
        conn.close()
    spool_missing = sum(crash_child.event_id(i) not in ids for i in acks.spool)
    return Audit(ok, len(wanted - stored), bad, int(sem), int(vec), spool_missing)


def t1_crash(size: Size, work: Path) -> Result:
    r = Report("T1", T1_NAME)
    rounds = pick(size, 4, 10, 20)
    per_round = pick(size, 150, 400, 1000)
    rng = random.Random(20260101)
    cache_db, spool_db = work / "cache.db", work / "spool.db"
    acks = Acks()
    kills = broken = 0
    worst = Audit(True, 0, 0, 0, 0, 0)
    start = 0
    for _ in range(rounds):
        proc = child("writer", str(cache_db), str(spool_db), "--start", str(start), "--count", str(per_round))
        reader = LineReader(proc)
        # kill after a random number of acknowledged commits: anywhere within the round's writes
        kill_at = rng.randint(per_round // 4, 2 * per_round - 1)
        seen = 0
        try:
            if reader.get(60) != "ready":
                r.require(False, "writer never became ready")
                break
            while seen < kill_at:
                line = reader.get(30)
                if line is None or line == "done":
                    break
                acks.take(line)
                seen += 1
            time.sleep(rng.random() * 0.002)  # land inside the next transaction, not between two
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        kills += proc.returncode == -signal.SIGKILL
        for line in reader.rest():
            acks.take(line)
        result = audit(cache_db, spool_db, acks)
        broken += not result.integrity
        worst = Audit(
            worst.integrity and result.integrity,
            max(worst.cache_missing, result.cache_missing),
            max(worst.bad_hashes, result.bad_hashes),
            result.sem_rows,
            result.vec_rows,
            max(worst.spool_missing, result.spool_missing),
        )
        r.require(
            result.sem_rows == result.vec_rows,
            f"semantic rows {result.sem_rows} != vec rows {result.vec_rows}",
        )
        start += per_round
    r.figure(
        rounds=rounds,
        kills=kills,
        rows_acknowledged=len(acks.cache),
        rows_lost=worst.cache_missing,
        events_acknowledged=len(acks.spool),
        events_lost=worst.spool_missing,
        bad_hashes=worst.bad_hashes,
        integrity_failures=broken,
        sem_rows=worst.sem_rows,
        vec_rows=worst.vec_rows,
    )
    r.require(kills == rounds, f"only {kills} of {rounds} rounds ended in a SIGKILL")
    r.require(broken == 0, f"integrity_check failed after {broken} kills")
    r.require(worst.cache_missing == 0, f"{worst.cache_missing} acknowledged cache rows lost")
    r.require(worst.spool_missing == 0, f"{worst.spool_missing} acknowledged events lost")
    r.require(worst.bad_hashes == 0, f"{worst.bad_hashes} stored answers fail their sha256")
    r.require(len(acks.cache) > 0 and len(acks.spool) > 0, "nothing was acknowledged")
    return r.result()


# --- T4 ---------------------------------------------------------------------------------------

SOURCE_DIRS = ("shared", "edge_agent", "cloud_hub", "models")
_REMOVERS = {"remove", "unlink", "rename", "replace", "rmtree", "move", "copy", "copyfile", "copy2"}


def journal_violations(source: str, filename: str = "<source>") -> list[str]:
    """Calls that delete, rename or copy a ``-wal``/``-shm``/``-journal`` file or copy a ``.db``."""
    found: list[str] = []
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name not in _REMOVERS:
            continue
        strings = [
            n.value
            for arg in [*node.args, *(k.value for k in node.keywords)]
            for n in ast.walk(arg)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
        ]
        if any(s.endswith(("-wal", "-shm", "-journal")) for s in strings):
            found.append(f"{filename}:{node.lineno}: {name}() on a SQLite journal file")
        elif name.startswith("copy") and any(s.endswith(".db") for s in strings):
            found.append(f"{filename}:{node.lineno}: {name}() of a database file (use the backup API)")
    return found


def scan_sources(root: Path = REPO_ROOT) -> tuple[int, list[str]]:
    files = 0
    found: list[str] = []
    for top in SOURCE_DIRS:
        for path in sorted((root / top).rglob("*.py")):
            files += 1
            found += journal_violations(path.read_text(), str(path.relative_to(root)))
    return files, found


def t4_journal(size: Size, work: Path) -> Result:
    r = Report("T4", T4_NAME)
    files, found = scan_sources()
    r.figure(files_scanned=files, violations=len(found))
    r.require(not found, "; ".join(found[:5]))
    planted = journal_violations('import os\nos.remove(db_path + "-wal")\nshutil.copy(p, "cache.db")\n')
    r.control(len(planted) == 2, "the journal gate (a planted remove and copy)")
    # runtime: a hot WAL left by a kill survives every store's open, and its rows are read
    cache_db, spool_db = work / "cache.db", work / "spool.db"
    proc = child("writer", str(cache_db), str(spool_db), "--count", "100000")
    reader = LineReader(proc)
    acks = Acks()
    for _ in range(200):
        line = reader.get(30)
        if line is None:
            break
        acks.take(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for line in reader.rest():
        acks.take(line)
    wal = {p: os.stat(p).st_ino for p in (Path(f"{cache_db}-wal"), Path(f"{spool_db}-wal")) if p.exists()}
    r.figure(hot_wal_files=len(wal))
    cache = crash_child.open_cache(cache_db)
    spool = TelemetrySpool(spool_db)
    kept = sum(p.exists() and os.stat(p).st_ino == ino for p, ino in wal.items())
    spool.close()
    cache.close()
    result = audit(cache_db, spool_db, acks)
    r.figure(wal_files_kept=kept, rows_lost=result.cache_missing, events_lost=result.spool_missing)
    r.require(len(wal) == 2, "the kill left no hot WAL to test with")
    r.require(kept == len(wal), f"{len(wal) - kept} hot WAL files deleted or replaced on open")
    r.require(result.cache_missing == 0 and result.spool_missing == 0, "rows in the hot WAL were lost")
    return r.result()
