"""A TCP proxy that breaks the link on purpose: latency, bandwidth, cuts, drops, black holes.

The reliability scenarios put it between an edge and the hub (or any client and server) and
change its faults while traffic flows, the way toxiproxy is used elsewhere. It forwards bytes and
knows nothing of ZeroMQ or CURVE, so everything it does looks to both ends like a real network:
a cut is a reset connection, a black hole is a peer that accepted and then went silent, dropped
bytes are acknowledgements that never arrive.

Each direction (``up``: client → server, ``down``: server → client) has its own ``Faults``; the
proxy reads them for every chunk, so a change applies to the next bytes of every open connection.
``start_in_thread`` runs the proxy on its own event loop for callers that are not asyncio code
(a process killer, a synchronous ZeroMQ socket); every method may be called from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_CHUNK = 64 * 1024
# a paced write goes out in slices this big, so a bandwidth limit holds within one chunk too
_SLICE = 8 * 1024


@dataclass
class Faults:
    """What happens to the bytes of one direction; every field may be changed at any time."""

    latency_s: float = 0.0  # each chunk is held this long before it is forwarded
    bandwidth_bps: float | None = None  # bytes per second per connection (None: unlimited)
    # after this many bytes on a connection the rest is read and silently discarded
    drop_after: int | None = None
    # after this many bytes on a connection it is cut (both sides reset)
    cut_after: int | None = None
    black_hole: bool = False  # read everything, forward nothing


@dataclass
class ProxyStats:
    accepted: int = 0
    refused: int = 0
    cut: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    dropped_up: int = 0
    dropped_down: int = 0


@dataclass
class _Pipe:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    faults: Faults
    count: Callable[[int, int], None]  # (forwarded, dropped)
    sent: int = 0
    # bounded, so a slow direction pushes back on its sender instead of buffering without limit
    queue: asyncio.Queue[tuple[float, bytes] | None] = field(default_factory=lambda: asyncio.Queue(64))


class FaultProxy:
    """Listens on ``listen_host:listen_port`` (0: any free port) and forwards to ``upstream``."""

    def __init__(
        self, upstream_host: str, upstream_port: int, *, listen_host: str = "127.0.0.1", listen_port: int = 0
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listen = (listen_host, listen_port)
        self.up = Faults()
        self.down = Faults()
        # new connections: accepted and held without an upstream (silent), or closed at once
        self.black_hole_new = False
        self.refuse_new = False
        self.stats = ProxyStats()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._writers: dict[asyncio.Task[None], list[asyncio.StreamWriter]] = {}

    @property
    def endpoint(self) -> str:
        """The proxy's address as a ZeroMQ endpoint."""
        return f"tcp://{self.listen[0]}:{self.port}"

    # --- lifetime -----------------------------------------------------------------------------

    async def start(self) -> int:
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._accept, self.listen[0], self.listen[1])
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._cut_all()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def start_in_thread(self) -> FaultProxy:
        """Run on a private event loop in a daemon thread; ``stop`` ends it."""
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.start(), loop).result(10)
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        self._thread = None

    # --- faults -------------------------------------------------------------------------------

    def cut(self) -> int:
        """Reset every open connection now; returns how many there were. New ones are accepted."""
        loop = self._loop
        if loop is None:
            return 0
        n = len(self._connections)
        if self._thread is not None and threading.current_thread() is not self._thread:
            loop.call_soon_threadsafe(self._cut_all)
        else:
            self._cut_all()
        return n

    def heal(self) -> None:
        """Remove every fault (open connections stay as they are)."""
        self.up, self.down = Faults(), Faults()
        self.black_hole_new = self.refuse_new = False

    def partition(self) -> None:
        """Cut every connection and hold new ones silently until ``heal``."""
        self.black_hole_new = True
        self.cut()

    def _cut_all(self) -> None:
        for task in list(self._connections):
            for writer in self._writers.get(task, []):
                _reset(writer)
            task.cancel()
            self.stats.cut += 1

    # --- forwarding ---------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse_new:
            self.stats.refused += 1
            _reset(writer)
            return
        self.stats.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self._writers[task] = [writer]
        try:
            if self.black_hole_new:
                await self._swallow(reader)
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                self.stats.refused += 1
                return
            self._writers[task].append(up_writer)
            upstream = _Pipe(reader, up_writer, self.up, self._count_up)
            downstream = _Pipe(up_reader, writer, self.down, self._count_down)
            pumps = [asyncio.create_task(self._pump(p)) for p in (upstream, downstream)]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for p in pumps:
                    p.cancel()
                for p in pumps:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await p
        except asyncio.CancelledError:
            pass
        finally:
            for w in self._writers.pop(task, []):
                with contextlib.suppress(Exception):
                    w.close()
            self._connections.discard(task)

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        while await reader.read(_CHUNK):
            pass

    def _count_up(self, forwarded: int, dropped: int) -> None:
        self.stats.bytes_up += forwarded
        self.stats.dropped_up += dropped

    def _count_down(self, forwarded: int, dropped: int) -> None:
        self.stats.bytes_down += forwarded
        self.stats.dropped_down += dropped

    async def _pump(self, pipe: _Pipe) -> None:
        """Read into a queue stamped with each chunk's release time; a writer task releases it."""
        writer = asyncio.create_task(self._release(pipe))
        try:
            while True:
                data = await pipe.reader.read(_CHUNK)
                if not data:
                    break
                f = pipe.faults
                if f.black_hole:
                    pipe.count(0, len(data))
                    continue
                if f.drop_after is not None and pipe.sent >= f.drop_after:
                    pipe.count(0, len(data))
                    continue
                if f.drop_after is not None and pipe.sent + len(data) > f.drop_after:
                    keep = f.drop_after - pipe.sent
                    pipe.count(0, len(data) - keep)
                    data = data[:keep]
                if f.cut_after is not None and pipe.sent + len(data) >= f.cut_after:
                    data = data[: max(f.cut_after - pipe.sent, 0)]
                    pipe.sent += len(data)
                    await pipe.queue.put((time.monotonic() + f.latency_s, data))
                    await pipe.queue.put(None)
                    await writer
                    self.stats.cut += 1
                    _reset(pipe.writer)
                    return
                pipe.sent += len(data)
                await pipe.queue.put((time.monotonic() + f.latency_s, data))
            await pipe.queue.put(None)
            await writer
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    async def _release(self, pipe: _Pipe) -> None:
        while True:
            item = await pipe.queue.get()
            if item is None:
                with contextlib.suppress(OSError):
                    pipe.writer.write_eof()
                return
            due, data = item
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            for i in range(0, len(data), _SLICE):
                piece = data[i : i + _SLICE]
                pipe.writer.write(piece)
                await pipe.writer.drain()
                pipe.count(len(piece), 0)
                bps = pipe.faults.bandwidth_bps
                if bps:
                    await asyncio.sleep(len(piece) / bps)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST rather than a FIN, the way a crashed host or a cut cable ends a connection."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(Exception):
        writer.transport.abort()
