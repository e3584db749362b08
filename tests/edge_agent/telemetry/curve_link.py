"""A minimal real CURVE DEALER/ROUTER pair carrying telemetry frames, for the delivery tests.

The hub side authenticates edges through a ZAP allow-list and passes the authenticated public key
to the store as the edge id, as the hub link does; ``lose_acks`` makes it persist a batch and then
drop the reply, the worst case for double counting.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import zmq
import zmq.asyncio
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from cloud_hub.sink import TelemetrySink
from shared.codec import Codec
from shared.wire import TelemetryAck, TelemetryBatch


def make_keys(root: Path) -> tuple[Path, Path, Path]:
    """(hub secret file, edge secret file, allow-list dir holding the edge's public key)."""
    hub_dir, edge_dir, allowed = root / "hub", root / "edge", root / "allowed"
    for d in (hub_dir, edge_dir, allowed):
        d.mkdir(parents=True)
    _, hub_secret = zmq.auth.create_certificates(hub_dir, "hub")
    edge_public, edge_secret = zmq.auth.create_certificates(edge_dir, "edge")
    Path(edge_public).rename(allowed / "edge.key")
    return Path(hub_secret), Path(edge_secret), allowed


class CurveHub:
    def __init__(self, endpoint: str, secret_file: Path, allowed: Path, sink: TelemetrySink) -> None:
        self.endpoint, self.secret_file, self.allowed, self.sink = endpoint, secret_file, allowed, sink
        self.lose_acks = 0
        self.ack_first: int | None = None  # acknowledge only this many batches, then persist silently
        self.batches = 0
        self._arrived = threading.Condition()  # notified on each batch, for ``wait_batches``
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        self._stop.clear()
        self._ready.clear()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def wait_batches(self, n: int, timeout_s: float) -> bool:
        """Block until ``n`` batches have arrived (acknowledged or not); whether they did in time."""
        with self._arrived:
            return self._arrived.wait_for(lambda: self.batches >= n, timeout_s)

    def _serve(self) -> None:
        ctx = zmq.Context()
        auth = ThreadAuthenticator(ctx)
        sock = ctx.socket(zmq.ROUTER)
        try:
            sock.linger = 0
            auth.start()
            auth.configure_curve(domain="*", location=str(self.allowed))
            public, secret = zmq.auth.load_certificate(self.secret_file)
            sock.curve_secretkey, sock.curve_publickey, sock.curve_server = secret, public, True
            sock.bind(self.endpoint)
            self._ready.set()
            codec = Codec()
            while not self._stop.is_set():
                if not sock.poll(50):
                    continue
                ident, payload = sock.recv_multipart(copy=False)
                body = codec.decode(payload.bytes)
                assert isinstance(body, TelemetryBatch)
                ack = self.sink.ingest(str(payload.get("User-Id")), body)
                with self._arrived:
                    self.batches += 1
                    self._arrived.notify_all()
                if self.lose_acks > 0:
                    self.lose_acks -= 1
                    continue
                if self.ack_first is not None and self.batches > self.ack_first:
                    continue
                sock.send_multipart([ident.bytes, codec.encode(ack)])
        finally:
            sock.close(0)
            auth.stop()
            ctx.term()


class CurveEdgeTransport:
    """Implements ``TelemetryTransport`` over an asyncio DEALER."""

    def __init__(self, endpoint: str, secret_file: Path, hub_public_file: Path) -> None:
        public, secret = zmq.auth.load_certificate(secret_file)
        server, _ = zmq.auth.load_certificate(hub_public_file)
        self._ctx = zmq.asyncio.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        try:
            self._sock.linger = 0
            self._sock.curve_secretkey, self._sock.curve_publickey, self._sock.curve_serverkey = (
                secret,
                public,
                server,
            )
            self._sock.immediate = True  # never queue a batch for a hub that is not there
            self._sock.reconnect_ivl = 100
            self._sock.connect(endpoint)
        except BaseException:
            self.close()
            raise
        self._codec = Codec()

    async def send_telemetry(self, batch: TelemetryBatch, timeout: float) -> TelemetryAck:
        await asyncio.wait_for(self._sock.send(self._codec.encode(batch)), timeout)
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            frame = await asyncio.wait_for(self._sock.recv(), max(end - loop.time(), 0.001))
            body = self._codec.decode(frame)
            if isinstance(body, TelemetryAck) and body.batch_id == batch.batch_id:
                return body
            # a late ack for an earlier, already-retried batch: ignore it

    def close(self) -> None:
        self._sock.close(0)
        self._ctx.term()
