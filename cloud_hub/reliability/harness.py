"""Real hub parts for the hub-side scenarios: an in-process hub, raw CURVE peers, log counters.

Nothing here stands in for ZeroMQ or CURVE. ``Peer`` is a bare DEALER that sends whatever bytes
a scenario wants (a broken or hostile edge) and watches its own connection through a socket
monitor, so a scenario can tell "refused at the handshake" from "dropped later" from "answered".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from cloud_hub.auth import AuthenticatorFactory, Enrolments
from cloud_hub.backends.echo import EchoBackend
from cloud_hub.registry import ModelRegistry, RegisteredModel
from cloud_hub.server import Hub
from shared.codec import Codec
from shared.config import HubModelEntry
from shared.hubproc import LinkKeys
from shared.keys import key_paths, load_secret
from shared.wire import Body


def echo_registry() -> ModelRegistry:
    return ModelRegistry([RegisteredModel(HubModelEntry(name="echo", backend="echo"), EchoBackend())], "echo")


async def start_hub(
    keys: LinkKeys,
    *,
    max_frame: int = 4 * 1024 * 1024,
    heartbeat_s: float = 0.5,
    authenticator: AuthenticatorFactory = Enrolments,
) -> Hub:
    hub = Hub(
        bind="tcp://127.0.0.1:0",
        secret_key_file=key_paths(keys.hub_home / "keys")[1],
        enrolled_dir=keys.hub_home / "enrolled",
        registry=echo_registry(),
        heartbeat_s=heartbeat_s,
        max_frame=max_frame,
        enrol_poll_s=0.1,
        authenticator=authenticator,
    )
    await hub.start()
    return hub


class Peer:
    """A DEALER with CURVE (``secret_file``) or without (``None``: a plain ZMTP peer)."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        endpoint: str,
        hub_public: bytes | None,
        secret_file: Path | None,
        *,
        max_frame: int = 1 << 28,
    ) -> None:
        self.socket = ctx.socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.sndtimeo = 5000
        if secret_file is not None and hub_public is not None:
            self.socket.curve_serverkey = hub_public
            self.socket.curve_publickey, self.socket.curve_secretkey = load_secret(secret_file)
        self.monitor = self.socket.get_monitor_socket()
        self.socket.connect(endpoint)
        self.codec = Codec(max_frame=max_frame)
        self.events: list[int] = []

    async def send(self, body: Body) -> bool:
        return await self.send_raw(self.codec.encode(body))

    async def send_raw(self, frame: bytes, timeout_s: float = 5.0) -> bool:
        """False when the frame could not even be queued (no completed connection)."""
        try:
            await asyncio.wait_for(self.socket.send(frame), timeout_s)
        except (TimeoutError, zmq.Again):
            return False
        return True

    async def recv(self, timeout_s: float) -> Body | None:
        if not await self.socket.poll(int(timeout_s * 1000)):
            return None
        return self.codec.decode(await self.socket.recv())

    async def drain_events(self, wait_s: float = 0.0) -> list[int]:
        """Monitor events seen so far (``zmq.EVENT_*``), waiting up to ``wait_s`` for the first."""
        while await self.monitor.poll(int(wait_s * 1000)):
            msg = parse_monitor_message(await self.monitor.recv_multipart())
            self.events.append(int(msg["event"]))
            wait_s = 0.0
        return self.events

    async def wait_event(self, event: int, timeout_s: float) -> bool:
        """Whether the monitor reports ``event`` (``zmq.EVENT_*``) within ``timeout_s``."""
        end = asyncio.get_running_loop().time() + timeout_s
        while event not in self.events:
            left = end - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            await self.drain_events(left)
        return True

    def close(self) -> None:
        self.socket.disable_monitor()
        self.monitor.close(linger=0)
        self.socket.close(linger=0)


class LogCount(logging.Handler):
    """Counts and measures the records a logger tree emits while installed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.bytes = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.bytes += len(self.format(record))

    def matching(self, text: str) -> int:
        return sum(text in r.getMessage() for r in self.records)


@contextmanager
def counting_logs(*names: str, level: int = logging.DEBUG) -> Iterator[LogCount]:
    handler = LogCount()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger(n) for n in names] or [logging.getLogger()]
    saved: list[tuple[logging.Logger, int]] = []
    for lg in loggers:
        saved.append((lg, lg.level))
        lg.setLevel(min(level, lg.level) if lg.level else level)
        lg.addHandler(handler)
    try:
        yield handler
    finally:
        for lg, lvl in saved:
            lg.removeHandler(handler)
            lg.setLevel(lvl)
