"""An embedder in a child process at the lowest CPU priority: the semantic index's spare-CPU worker.

Indexing an answered miss means embedding its question (about 5 ms of CPU on a small host), work
nobody waits for. In a thread of the agent, even one whose own priority is lowered, it would still
have to take the interpreter lock back after every embedding, and a low-priority thread that the
scheduler keeps waiting while the event loop hands it that lock stalls the loop with it. In a
process of its own at nice 19 it shares nothing with the loop: the agent's indexer thread only
waits on a pipe, and the embedding gets the CPU that serving leaves idle, or none.

The pipe carries raw bytes: a question as UTF-8 one way, its float32 row the other way (an empty
reply when the child failed on it). The child runs the same model file with one thread, which
gives the same rows as the agent's own session.
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

import numpy as np

from shared.embedding import EmbedderClosed, OnnxEmbedder, Vectors

log = logging.getLogger(__name__)

LOWEST_PRIORITY = 19


def _serve(model_dir: str, threads: int, nice: int, conn: Connection) -> None:
    """The child: embed each question that arrives until the pipe closes or an empty frame comes."""
    with contextlib.suppress(AttributeError, OSError):  # no priorities here: normal priority then
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    embedder = OnnxEmbedder(Path(model_dir), threads=threads)
    conn.send_bytes(str(embedder.dim).encode())
    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:
            return
        if not data:
            return
        try:
            row = embedder.embed([data.decode("utf-8")])[0]
        except Exception:  # a text the model cannot take: the parent drops that one job
            conn.send_bytes(b"")
            continue
        conn.send_bytes(np.ascontiguousarray(row, dtype=np.float32).tobytes())


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
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        with self._lock:
            if self._closed:
                raise EmbedderClosed("spare embedder is closed")
            for i, text in enumerate(texts):
                try:
                    self._conn.send_bytes(text.encode("utf-8"))
                    raw = self._conn.recv_bytes()
                except (EOFError, OSError) as exc:
                    raise EmbedderClosed(f"the spare embedder went away: {exc}") from exc
                if len(raw) != 4 * self._dim:
                    raise ValueError("the spare embedder could not embed this text")
                out[i] = np.frombuffer(raw, dtype=np.float32)
        return out

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
