"""Pushes global-cache changes to edges: PUB for live deltas, ROUTER for snapshots (the Clone pattern).

Each change is one ``CacheDelta`` whose ``seq`` is the store's sequence number, so an edge sees a
gap as soon as it misses one and asks the snapshot socket for everything after its own number.
Both sockets are CURVE servers; which clients may connect is up to the ZAP handler installed on
``ctx`` (the hub's allow-list). Sends never block: a subscriber over its high-water mark loses
deltas (and later catches up by snapshot) instead of stalling the hub.

Every ``beacon_s`` the PUB socket also carries an empty ``CacheDelta`` holding the current
sequence number (the Clone pattern's heartbeat): an edge that lost the last deltas of a burst
would otherwise only notice the gap at the next change, which on a quiet hub may never come.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import zmq

from cloud_hub.cache.store import GlobalCacheStore
from shared.cache_text import GlobalEntry
from shared.codec import Codec, DecodeFailure
from shared.keys import fingerprint
from shared.sockets import CurveServer, SocketOptions, open_socket
from shared.wire import CacheDelta, CacheSnapshotDone, CacheSnapshotRequest, Error

log = logging.getLogger(__name__)

TOPIC = b"cache"
SNAPSHOT_CHUNK = 256  # entries per snapshot frame, well under the 4 MiB frame limit


class CachePublisher:
    def __init__(
        self,
        ctx: zmq.Context[zmq.Socket[bytes]],
        store: GlobalCacheStore,
        *,
        pub_endpoint: str,
        snapshot_endpoint: str,
        public_key: bytes,
        secret_key: bytes,
        hwm: int = 1000,
        beacon_s: float = 1.0,
    ) -> None:
        self.store = store
        self.beacon_s = beacon_s
        self._codec = Codec()
        self._pub_lock = threading.Lock()
        curve = CurveServer(public=public_key, secret=secret_key)
        options = SocketOptions(sndhwm=hwm, linger_ms=0)
        self._pub = open_socket(ctx, zmq.PUB, options=options, curve=curve, bind=pub_endpoint)
        try:
            self._snap = open_socket(ctx, zmq.ROUTER, options=options, curve=curve, bind=snapshot_endpoint)
        except BaseException:
            # an open socket would keep the hub's context from terminating at shutdown
            self._pub.close(linger=0)
            raise
        self.pub_endpoint = self._pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self.snapshot_endpoint = self._snap.getsockopt_string(zmq.LAST_ENDPOINT)
        self._stop = threading.Event()
        self._rebind_snap = threading.Event()
        self._thread = threading.Thread(target=self._serve_snapshots, name="cache-snapshots", daemon=True)
        self._thread.start()
        self._closed = False

    def publish(self, entry: GlobalEntry) -> bool:
        """Send one change to every subscriber without waiting for any of them.

        A PUB socket drops a message for a subscriber over its high-water mark instead of blocking;
        that subscriber notices the gap in ``seq`` and asks for a snapshot.

        An alias is for one tenant of one edge, and every subscriber would read a PUB frame: only
        its sequence number goes out, in an empty delta, and each edge's snapshot request is then
        answered with what that edge may see (its CURVE key decides, never a payload field).
        """
        entries = [] if entry.kind == "alias" else [entry.to_wire()]
        frame = self._codec.encode(CacheDelta(seq=entry.version, entries=entries))
        with self._pub_lock:
            if self._closed:
                return False
            try:
                self._pub.send_multipart([TOPIC, frame], flags=zmq.NOBLOCK)
            except zmq.Again:
                return False
        return True

    def _serve_snapshots(self) -> None:
        codec = Codec()
        poller = zmq.Poller()
        poller.register(self._snap, zmq.POLLIN)
        next_beacon = time.monotonic() + self.beacon_s
        while not self._stop.is_set():
            if time.monotonic() >= next_beacon:
                self._beacon(codec)
                next_beacon = time.monotonic() + self.beacon_s
            if self._rebind_snap.is_set():
                self._rebind_snap.clear()
                _rebind(self._snap, self.snapshot_endpoint)  # this thread owns the socket
            if not dict(poller.poll(100)):
                continue
            try:
                routing, frame = self._snap.recv_multipart(zmq.NOBLOCK, copy=False)
            except (zmq.Again, ValueError):
                continue  # a frame count we do not speak: ignore rather than crash the loop
            try:
                body = codec.decode(frame.buffer)
                if not isinstance(body, CacheSnapshotRequest):
                    raise DecodeFailure("invalid", f"expected cache_snapshot_req, got {type(body).__name__}")
            except DecodeFailure as exc:
                self._reply(codec, routing.bytes, Error(request_id="", code=exc.code, message=exc.message))
                continue
            entries, seq = self.store.changes_since(max(body.since, 0), edge=edge_of(frame))
            ident = routing.bytes
            for i in range(0, len(entries), SNAPSHOT_CHUNK):
                chunk = entries[i : i + SNAPSHOT_CHUNK]
                self._reply(
                    codec, ident, CacheDelta(seq=chunk[-1].version, entries=[e.to_wire() for e in chunk])
                )
            self._reply(codec, ident, CacheSnapshotDone(seq=seq))

    def _beacon(self, codec: Codec) -> None:
        seq = self.store.seq
        if not seq:
            return
        frame = codec.encode(CacheDelta(seq=seq, entries=[]))
        with self._pub_lock:
            if self._closed:
                return
            # a subscriber over its high-water mark gets the next one
            with contextlib.suppress(zmq.Again):
                self._pub.send_multipart([TOPIC, frame], flags=zmq.NOBLOCK)

    def _reply(self, codec: Codec, ident: bytes, body: CacheDelta | CacheSnapshotDone | Error) -> None:
        try:
            self._snap.send_multipart([ident, codec.encode(body)], flags=zmq.NOBLOCK)
        except zmq.Again:
            log.warning("snapshot reply dropped: client over its high-water mark")

    def drop_connections(self) -> None:
        """Close every subscriber's connection (the snapshot socket's within 100 ms).

        ZAP judges a connection once, at its handshake, so this is how a revoked edge stops
        receiving deltas: enrolled edges reconnect at once and catch up on the gap by snapshot,
        the revoked one fails its new handshake."""
        with self._pub_lock:
            if self._closed:
                return
            _rebind(self._pub, self.pub_endpoint)
        self._rebind_snap.set()

    def close(self) -> None:
        with self._pub_lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._thread.join(timeout=5)
        self._pub.close(linger=0)
        self._snap.close(linger=0)


def edge_of(frame: zmq.Frame) -> str:
    """The edge id of the CURVE key a frame's connection proved ("" without an authenticator)."""
    try:
        user_id = frame.get("User-Id")
    except zmq.ZMQError:
        return ""
    return fingerprint(user_id.encode("ascii")) if isinstance(user_id, str) and user_id else ""


def _rebind(sock: zmq.Socket[bytes], endpoint: str) -> None:
    """Unbind (which closes the connections accepted there) and bind the same endpoint again."""
    sock.unbind(endpoint)
    for attempt in range(20):
        try:
            sock.bind(endpoint)
            return
        except zmq.ZMQError:
            if attempt == 19:
                log.exception("global cache could not bind %s again", endpoint)
                return
            time.sleep(0.025)
