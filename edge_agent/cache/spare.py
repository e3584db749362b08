"""An embedder in a child process at the lowest CPU priority: the semantic index's spare-CPU worker.

Indexing an answered miss means embedding its question (about 5 ms of CPU on a small host), work
nobody waits for. In a thread of the agent, even one whose own priority is lowered, it would still
have to take the interpreter lock back after every embedding, and a low-priority thread that the
scheduler keeps waiting while the event loop hands it that lock stalls the loop with it. In a
process of its own at nice 19, in the idle scheduling class where Linux has one, it shares nothing
with the loop: the agent's indexer thread only waits on a pipe, and the embedding gets the CPU that
serving leaves idle, or none.

The pipe carries one frame each way per call: the questions (a msgpack list of strings) one way;
one byte per question (1: embedded, 0: the child failed on it) and then the float32 rows the other
way, so a batch costs one round trip. The child embeds each question alone, with one thread, so
its rows are the agent's own session's rows, whatever else came in the same frame.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path

import msgspec
import numpy as np

from shared.embedding import EmbedderClosed, OnnxEmbedder, Vectors

log = logging.getLogger(__name__)

LOWEST_PRIORITY = 19


def _serve(model_dir: str, threads: int, nice: int, conn: Connection) -> None:
    """The child: embed each question that arrives until the pipe closes or an empty frame comes."""
    with contextlib.suppress(AttributeError, OSError):  # no priorities here: normal priority then
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    with contextlib.suppress(AttributeError, OSError):  # Linux only; elsewhere nice alone
        # nice 19 still runs out its time slice before a woken request handler gets the core
        # (EEVDF); an idle-class task gives the core up the moment any other task wakes
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    embedder = OnnxEmbedder(Path(model_dir), threads=threads)
    dim = embedder.dim
    conn.send_bytes(str(dim).encode())
    decode = msgspec.msgpack.Decoder(list[str])
    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:
            return
        if not data:
            return
        texts = decode.decode(data)
        ok = np.ones(len(texts), dtype=np.uint8)
        rows = np.zeros((len(texts), dim), dtype=np.float32)
        for i, text in enumerate(texts):
            try:
                rows[i] = embedder.embed([text])[0]  # alone: a batch would change the rows
            except Exception:  # a text the model cannot take: the parent drops that one job
                ok[i] = 0
        conn.send_bytes(ok.tobytes() + rows.tobytes())


class SpareEmbedder:
    """An ``Embedder`` whose work runs in a child process at ``nice`` (blocking calls, thread-safe)."""

    def __init__(self, model_dir: Path, *, threads: int = 1, nice: int = LOWEST_PRIORITY) -> None:
        ctx = mp.get_context("spawn")  # a fresh interpreter: no copy of the agent's threads or sockets
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve,
            args=(str(model_dir), threads, nice, child),
            name="cache-spare-embedder",
            daemon=True,
        )
        self._proc.start()
        child.close()
        self._lock = threading.Lock()
        self._closed = False
        self._encode = msgspec.msgpack.Encoder()
        try:
            self._dim = int(self._conn.recv_bytes().decode())
        except (EOFError, OSError, ValueError) as exc:
            self.close()
            raise EmbedderClosed(f"the spare embedder did not start: {exc}") from exc

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def embed(self, texts: Sequence[str]) -> Vectors:
        rows = self.embed_each(texts)
        if any(row is None for row in rows):
            raise ValueError("the spare embedder could not embed this text")
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        for i, row in enumerate(rows):
            out[i] = row
        return out

    def embed_each(self, texts: Sequence[str]) -> list[Vectors | None]:
        """Each text's row, ``None`` for a text the child could not embed; one round trip."""
        if not texts:
            return []
        n = len(texts)
        with self._lock:
            if self._closed:
                raise EmbedderClosed("spare embedder is closed")
            try:
                self._conn.send_bytes(self._encode.encode(list(texts)))
                raw = self._conn.recv_bytes()
            except (EOFError, OSError) as exc:
                raise EmbedderClosed(f"the spare embedder went away: {exc}") from exc
        if len(raw) != n + 4 * self._dim * n:
            raise EmbedderClosed(f"the spare embedder answered {len(raw)} bytes for {n} texts")
        rows = np.frombuffer(raw, dtype=np.float32, offset=n).reshape(n, self._dim)
        return [rows[i].copy() if raw[i] else None for i in range(n)]

    def close(self) -> None:
        """Stop the child (a call in progress finishes first); idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(OSError):  # the child may be gone already
                self._conn.send_bytes(b"")
            self._conn.close()
        self._proc.join(timeout=5)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=5)
