"""The socket factory against real libzmq sockets over loopback TCP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from shared.sockets import CurveClient, CurveServer, SocketOptions, frame_ceiling, open_socket

LOOPBACK = "tcp://127.0.0.1:0"
WAIT_MS = 5000  # generous for a loaded machine; the positive paths finish in milliseconds


@dataclass(frozen=True)
class Pairs:
    server_public: bytes
    server_secret: bytes
    client_public: bytes
    client_secret: bytes

    @property
    def server(self) -> CurveServer:
        return CurveServer(public=self.server_public, secret=self.server_secret)

    def client(self, server_key: bytes | None = None) -> CurveClient:
        key = self.server_public if server_key is None else server_key
        return CurveClient(server_key=key, public=self.client_public, secret=self.client_secret)


@pytest.fixture
def ctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield context
    context.destroy(linger=0)


@dataclass
class Opener:
    """Opens sockets on one context and keeps them until teardown closes them.

    A test's sockets are dropped when the test function returns, before ``ctx`` is destroyed, so
    without a reference held here each one would be collected unclosed.
    """

    ctx: zmq.Context[zmq.Socket[bytes]]
    opened: list[zmq.Socket[bytes]] = field(default_factory=list)

    def __call__(self, kind: int, **kwargs: Any) -> zmq.Socket[bytes]:
        return self.keep(open_socket(self.ctx, kind, **kwargs))

    def keep(self, sock: zmq.Socket[bytes]) -> zmq.Socket[bytes]:
        self.opened.append(sock)
        return sock


@pytest.fixture
def open_(ctx: zmq.Context[zmq.Socket[bytes]]) -> Iterator[Opener]:
    opener = Opener(ctx)
    try:
        yield opener
    finally:
        for sock in opener.opened:
            sock.close(linger=0)


@pytest.fixture
def pairs() -> Pairs:
    return Pairs(*zmq.curve_keypair(), *zmq.curve_keypair())


def _endpoint(sock: zmq.Socket[Any]) -> str:
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def _next_event(monitor: zmq.Socket[bytes], timeout_ms: int = WAIT_MS) -> int:
    assert monitor.poll(timeout_ms), "no socket event in time"
    event = recv_monitor_message(monitor)["event"]
    assert isinstance(event, int)
    return event


def test_curve_pair_built_by_the_factory_talks(open_: Opener, pairs: Pairs) -> None:
    server = open_(zmq.ROUTER, curve=pairs.server, bind=LOOPBACK)
    client = open_(zmq.DEALER, curve=pairs.client(), connect=_endpoint(server))
    client.send(b"ping")
    assert server.poll(WAIT_MS)
    peer, body = server.recv_multipart()
    assert body == b"ping"
    server.send_multipart([peer, b"pong"])
    assert client.poll(WAIT_MS)
    assert client.recv() == b"pong"
    assert server.getsockopt(zmq.MECHANISM) == client.getsockopt(zmq.MECHANISM) == zmq.CURVE
    assert (server.getsockopt(zmq.CURVE_SERVER), client.getsockopt(zmq.CURVE_SERVER)) == (1, 0)


@pytest.mark.parametrize("impostor", ["wrong server key", "no CURVE at all"])
def test_a_client_without_the_right_server_key_never_gets_through(
    open_: Opener, pairs: Pairs, impostor: str
) -> None:
    server = open_(zmq.ROUTER, curve=pairs.server, bind=LOOPBACK)
    events = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    monitor = open_.keep(server.get_monitor_socket(events))
    other_server_public, _ = zmq.curve_keypair()
    curve = pairs.client(server_key=other_server_public) if impostor == "wrong server key" else None
    client = open_(zmq.DEALER, curve=curve, connect=_endpoint(server))
    client.send(b"let me in")
    assert _next_event(monitor) == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    assert not server.poll(300)


def test_every_option_is_applied_before_the_socket_is_used(open_: Opener) -> None:
    options = SocketOptions(
        linger_ms=250,
        sndhwm=17,
        rcvhwm=19,
        immediate=True,
        reconnect_ivl_ms=123,
        reconnect_ivl_max_ms=4567,
        heartbeat_ivl_ms=1500,
        heartbeat_timeout_ms=4500,
        heartbeat_ttl_ms=9000,  # libzmq keeps deciseconds, so a multiple of 100 reads back exactly
        max_msg_size=65536,
        zap_domain="edgeroute",
    )
    sock = open_(zmq.DEALER, options=options, connect="tcp://127.0.0.1:9")
    assert {
        "linger": sock.getsockopt(zmq.LINGER),
        "sndhwm": sock.getsockopt(zmq.SNDHWM),
        "rcvhwm": sock.getsockopt(zmq.RCVHWM),
        "immediate": sock.getsockopt(zmq.IMMEDIATE),
        "reconnect_ivl": sock.getsockopt(zmq.RECONNECT_IVL),
        "reconnect_ivl_max": sock.getsockopt(zmq.RECONNECT_IVL_MAX),
        "heartbeat_ivl": sock.getsockopt(zmq.HEARTBEAT_IVL),
        "heartbeat_timeout": sock.getsockopt(zmq.HEARTBEAT_TIMEOUT),
        "heartbeat_ttl": sock.getsockopt(zmq.HEARTBEAT_TTL),
        "maxmsgsize": sock.getsockopt(zmq.MAXMSGSIZE),
        "zap_domain": sock.getsockopt(zmq.ZAP_DOMAIN),
    } == {
        "linger": 250,
        "sndhwm": 17,
        "rcvhwm": 19,
        "immediate": 1,
        "reconnect_ivl": 123,
        "reconnect_ivl_max": 4567,
        "heartbeat_ivl": 1500,
        "heartbeat_timeout": 4500,
        "heartbeat_ttl": 9000,
        "maxmsgsize": 65536,
        "zap_domain": b"edgeroute",
    }


def test_defaults_keep_libzmq_defaults_except_linger(open_: Opener) -> None:
    readable = [
        zmq.SNDHWM,
        zmq.RCVHWM,
        zmq.IMMEDIATE,
        zmq.RECONNECT_IVL,
        zmq.RECONNECT_IVL_MAX,
        zmq.HEARTBEAT_IVL,
        zmq.HEARTBEAT_TIMEOUT,
        zmq.HEARTBEAT_TTL,
        zmq.MAXMSGSIZE,
        zmq.ZAP_DOMAIN,
        zmq.CURVE_SERVER,
        zmq.MECHANISM,
    ]
    bare = open_.keep(open_.ctx.socket(zmq.DEALER))
    built = open_(zmq.DEALER, connect="tcp://127.0.0.1:9")
    assert [built.getsockopt(o) for o in readable] == [bare.getsockopt(o) for o in readable]
    assert (built.getsockopt(zmq.LINGER), bare.getsockopt(zmq.LINGER)) == (0, -1)


def test_router_mandatory_turns_a_send_to_nobody_into_an_error(open_: Opener) -> None:
    strict = open_(zmq.ROUTER, options=SocketOptions(router_mandatory=True), bind=LOOPBACK)
    lax = open_(zmq.ROUTER, bind=LOOPBACK)
    lax.send_multipart([b"nobody", b"lost quietly"])
    with pytest.raises(zmq.ZMQError) as info:
        strict.send_multipart([b"nobody", b"refused"])
    assert info.value.errno == zmq.EHOSTUNREACH


def test_subscriptions_are_in_place_before_the_first_message(open_: Opener) -> None:
    pub = open_(zmq.PUB, bind=LOOPBACK)
    sub = open_(zmq.SUB, options=SocketOptions(subscribe=(b"cache",)), connect=_endpoint(pub))
    received: list[bytes] = []
    deadline = time.monotonic() + WAIT_MS / 1000
    while len(received) < 3 and time.monotonic() < deadline:
        # a PUB drops everything until the subscription has crossed the wire, so keep offering both
        pub.send(b"other: not for this subscriber")
        pub.send(b"cache: wanted")
        if sub.poll(20):
            received.append(sub.recv())
    assert len(received) == 3
    assert all(msg == b"cache: wanted" for msg in received)


def test_a_frame_over_max_msg_size_drops_the_connection(open_: Opener, pairs: Pairs) -> None:
    server = open_(zmq.ROUTER, options=SocketOptions(max_msg_size=4096), curve=pairs.server, bind=LOOPBACK)
    monitor = open_.keep(server.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED))
    client = open_(zmq.DEALER, curve=pairs.client(), connect=_endpoint(server))
    client.send(b"x" * 1024)
    assert server.poll(WAIT_MS)
    assert server.recv_multipart()[1] == b"x" * 1024
    assert _next_event(monitor) == zmq.EVENT_HANDSHAKE_SUCCEEDED
    client.send(b"x" * 8192)
    assert _next_event(monitor) == zmq.EVENT_DISCONNECTED
    assert not server.poll(300)


def test_frame_ceiling_lets_a_few_times_the_codec_limit_through_curve(open_: Opener, pairs: Pairs) -> None:
    # the hub answers these with a typed "oversized" error, so they must reach it despite the
    # CURVE envelope, which libzmq counts against MAXMSGSIZE
    max_frame = 1000
    options = SocketOptions(max_msg_size=frame_ceiling(max_frame))
    server = open_(zmq.ROUTER, options=options, curve=pairs.server, bind=LOOPBACK)
    client = open_(zmq.DEALER, curve=pairs.client(), connect=_endpoint(server))
    client.send(b"x" * (4 * max_frame))
    assert server.poll(WAIT_MS)
    assert len(server.recv_multipart()[1]) == 4 * max_frame


@pytest.mark.parametrize(
    "fields",
    [
        {"sndhwm": -1},
        {"linger_ms": -2},
        {"heartbeat_timeout_ms": 6000},
        {"heartbeat_ivl_ms": 1000, "heartbeat_ttl_ms": 0xFFFF * 100 + 100},
    ],
)
def test_impossible_options_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SocketOptions(**fields)


def test_exactly_one_of_bind_and_connect(ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        open_socket(ctx, zmq.DEALER)
    with pytest.raises(ValueError, match="exactly one"):
        open_socket(ctx, zmq.DEALER, bind=LOOPBACK, connect="tcp://127.0.0.1:9")


def test_a_socket_that_fails_to_bind_is_closed() -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    with pytest.raises(zmq.ZMQError) as failure:
        open_socket(context, zmq.ROUTER, bind="tcp://127.0.0.1:not-a-port")
    # term() waits for every open socket, so it only returns if the failed one was closed; the
    # traceback stays referenced meanwhile, so garbage collection cannot close it for us
    terminator = threading.Thread(target=context.term, daemon=True)
    terminator.start()
    terminator.join(timeout=5)
    assert not terminator.is_alive()
    assert failure.tb is not None
