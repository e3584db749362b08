"""Edge side of the global cache: subscribe to hub deltas, catch up by snapshot when behind.

Clone pattern: subscribe first, then ask the snapshot socket for everything after the locally
stored sequence number, apply it, and from then on apply deltas in order. A delta whose ``seq``
is not the next one means something was missed (offline, or the hub dropped it at the
high-water mark), so the subscriber asks for a snapshot again; so does an empty delta (the hub's
periodic beacon) whose number is ahead of ours. The applied sequence number is
stored with the entries in one transaction, so a restarted edge resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import msgspec
import zmq

from edge_agent.cache.semantic import SemanticCache
from shared.cache_text import GlobalEntry
from shared.codec import Codec, DecodeFailure
from shared.sockets import CurveClient, SocketOptions, open_socket
from shared.wire import CacheDelta, CacheSnapshotDone, CacheSnapshotRequest

log = logging.getLogger(__name__)

TOPIC = b"cache"


class SnapshotTimeout(TimeoutError):
    """The hub's snapshot socket did not finish answering in time."""


class CacheSubscriber:
    def __init__(
        self,
        ctx: zmq.Context[zmq.Socket[bytes]],
        store: SemanticCache,
        *,
        pub_endpoint: str,
        snapshot_endpoint: str,
        server_key: bytes,
        public_key: bytes,
        secret_key: bytes,
        snapshot_timeout_s: float = 10.0,
    ) -> None:
        self.store = store
        self.snapshot_timeout_s = snapshot_timeout_s
        self._codec = Codec()
        curve = CurveClient(server_key=server_key, public=public_key, secret=secret_key)
        sub_options = SocketOptions(linger_ms=0, subscribe=(TOPIC,))
        snap_options = SocketOptions(linger_ms=0)
        self._sub = open_socket(ctx, zmq.SUB, options=sub_options, curve=curve, connect=pub_endpoint)
        try:
            self._snap = open_socket(
                ctx, zmq.DEALER, options=snap_options, curve=curve, connect=snapshot_endpoint
            )
        except BaseException:
            # an open socket would keep the caller's context from terminating
            self._sub.close(linger=0)
            raise
        self._lock = threading.Lock()  # the sockets belong to whichever thread holds this
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.snapshots = 0

    @property
    def seq(self) -> int:
        return self.store.hub_seq()

    def catch_up(self) -> int:
        """Fetch and apply everything after the local sequence number; returns the new number."""
        with self._lock:
            return self._catch_up()

    def _catch_up(self) -> int:
        since = self.store.hub_seq()
        self._snap.send(self._codec.encode(CacheSnapshotRequest(since=since)))
        deadline = time.monotonic() + self.snapshot_timeout_s
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0 or self._stop.is_set():
                raise SnapshotTimeout(f"no complete snapshot within {self.snapshot_timeout_s}s")
            if not self._snap.poll(min(left_ms, 200)):  # short slices, so close() is not kept waiting
                continue
            body = self._codec.decode(self._snap.recv())
            if isinstance(body, CacheDelta):
                self._apply(body, seq=since)  # entries only; the seq is recorded at the end
            elif isinstance(body, CacheSnapshotDone):
                self.store.apply_global([], body.seq, time.time())
                self.snapshots += 1
                return body.seq
            else:
                raise DecodeFailure("invalid", f"unexpected {type(body).__name__} on the snapshot socket")

    def _apply(self, delta: CacheDelta, *, seq: int) -> None:
        entries = []
        for raw in delta.entries:
            try:
                entries.append(GlobalEntry.from_wire(raw))
            except msgspec.ValidationError as exc:
                log.warning("skipping malformed cache entry: %s", exc)
        self.store.apply_global(entries, seq, time.time())

    def poll_once(self, timeout_ms: int = 100) -> bool:
        """Apply at most one pending delta (catching up if it reveals a gap); True if one arrived."""
        with self._lock:
            if not self._sub.poll(timeout_ms):
                return False
            _topic, frame = self._sub.recv_multipart()
            try:
                body = self._codec.decode(frame)
            except DecodeFailure as exc:
                log.warning("bad cache delta: %s", exc)
                return True
            if not isinstance(body, CacheDelta):
                return True
            current = self.store.hub_seq()
            if not body.entries:
                # the hub's beacon: its sequence number, so deltas lost at the end of a burst are
                # noticed (and fetched) without waiting for a next change that may never come
                if body.seq > current:
                    self._catch_up()
                return True
            if body.seq <= current:
                return True  # already in a snapshot we applied
            if body.seq == current + 1:
                self._apply(body, seq=body.seq)
            else:
                self._catch_up()
            return True

    def start(self) -> None:
        """Catch up, then follow deltas in a background thread until ``close``."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="cache-sync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        need_snapshot = True
        failures = 0
        while not self._stop.is_set():
            try:
                if need_snapshot:
                    self.catch_up()
                    need_snapshot = False
                    failures = 0
                self.poll_once(200)
            except (SnapshotTimeout, DecodeFailure) as exc:
                if self._stop.is_set():
                    return
                # a hub without a global cache (or one that is down) would otherwise fill the log
                (log.warning if failures == 0 else log.debug)("cache sync: %s; retrying", exc)
                failures += 1
                need_snapshot = True
                self._stop.wait(min(1.0 * 2**failures, 30.0))
            except Exception:  # a disk or socket error must not end syncing for the process lifetime
                if self._stop.is_set():
                    return
                log.exception("cache sync failed; retrying")
                failures += 1
                need_snapshot = True
                self._stop.wait(min(1.0 * 2**failures, 30.0))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            self._sub.close(linger=0)
            self._snap.close(linger=0)


class GlobalCacheFollower:
    """A ``CacheSubscriber`` with its own ZeroMQ context, started and stopped with the agent."""

    def __init__(
        self,
        store: SemanticCache,
        *,
        pub_endpoint: str,
        snapshot_endpoint: str,
        server_key: bytes,
        public_key: bytes,
        secret_key: bytes,
    ) -> None:
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.subscriber = CacheSubscriber(
            self._ctx,
            store,
            pub_endpoint=pub_endpoint,
            snapshot_endpoint=snapshot_endpoint,
            server_key=server_key,
            public_key=public_key,
            secret_key=secret_key,
        )
        self._closed = False

    async def start(self) -> None:
        self.subscriber.start()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self.subscriber.close()
        self._ctx.term()
