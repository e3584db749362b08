"""The one way edgeroute opens a ZeroMQ socket: a socket type, a CURVE role and a typed option set.

The link, the hub's ROUTER, the global-cache PUB/ROUTER pair, the edge's SUB/DEALER pair that
follows it, and the link benchmark all open their sockets here, so the security role, linger,
high-water marks, ZMTP heartbeats, reconnect back-off and message-size ceiling are written the same
way everywhere. Every option is set before ``bind``/``connect``: libzmq reads most of them when a
connection is made, so an option set afterwards would silently miss the first peer.

``SocketOptions`` leaves libzmq's own default wherever a field is ``None``; its one opinionated
default is ``linger_ms=0``, because libzmq's (wait forever for unsent messages) makes a process
hang at shutdown whenever its peer is away.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypeVar

import zmq

SocketT = TypeVar("SocketT", bound="zmq.Socket[Any]")

# libzmq keeps ZMQ_HEARTBEAT_TTL in deciseconds in a 16-bit field
_MAX_HEARTBEAT_TTL_MS = 0xFFFF * 100


@dataclass(frozen=True, slots=True)
class CurveServer:
    """The CURVE server role: this socket's own key pair (Z85 or 32 raw bytes each)."""

    public: bytes
    secret: bytes


@dataclass(frozen=True, slots=True)
class CurveClient:
    """The CURVE client role: the server's public key this socket insists on, and its own pair."""

    server_key: bytes
    public: bytes
    secret: bytes


Curve = CurveServer | CurveClient


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketOptions:
    """Socket options, times in milliseconds; ``None`` keeps libzmq's default for that option."""

    linger_ms: int = 0
    sndhwm: int | None = None
    rcvhwm: int | None = None
    # queue messages only onto completed connections (a send with no live peer fails at once)
    immediate: bool = False
    # ROUTER only: a message for an unknown or departed peer raises instead of being dropped
    router_mandatory: bool = False
    reconnect_ivl_ms: int | None = None
    reconnect_ivl_max_ms: int | None = None
    heartbeat_ivl_ms: int | None = None
    heartbeat_timeout_ms: int | None = None
    heartbeat_ttl_ms: int | None = None
    # a peer that sends a larger message is disconnected before its bytes reach the application;
    # under CURVE the limit counts the encrypted frame, 33 bytes longer than the plaintext
    max_msg_size: int | None = None
    zap_domain: str | None = None
    # SUB only: topic prefixes, subscribed before connecting so no early message is filtered out
    subscribe: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if self.linger_ms < -1:
            raise ValueError(f"linger_ms must be >= -1 (-1: wait forever), got {self.linger_ms}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "linger_ms" and type(value) is int and value < 0:
                raise ValueError(f"{f.name} must be >= 0, got {value}")
        if self.heartbeat_ttl_ms is not None and self.heartbeat_ttl_ms > _MAX_HEARTBEAT_TTL_MS:
            raise ValueError(
                f"heartbeat_ttl_ms must be <= {_MAX_HEARTBEAT_TTL_MS}, got {self.heartbeat_ttl_ms}"
            )
        if self.heartbeat_ivl_ms is None and (
            self.heartbeat_timeout_ms is not None or self.heartbeat_ttl_ms is not None
        ):
            # libzmq sends no PINGs without an interval, so a timeout or TTL alone would never act
            raise ValueError("heartbeat_timeout_ms and heartbeat_ttl_ms need heartbeat_ivl_ms")


def frame_ceiling(max_frame: int) -> int:
    """MAXMSGSIZE for a socket whose codec accepts frames up to ``max_frame`` bytes.

    Frames up to a few times the codec's limit still reach the application, which answers them with
    a typed ``oversized`` error; beyond that libzmq drops the sender before buffering the bytes.
    """
    return max_frame * 4 + 4096


def _apply_curve(sock: zmq.Socket[Any], curve: Curve) -> None:
    if isinstance(curve, CurveServer):
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, curve.secret)
    else:
        sock.setsockopt(zmq.CURVE_SERVERKEY, curve.server_key)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, curve.secret)


def configure(sock: zmq.Socket[Any], options: SocketOptions, curve: Curve | None = None) -> None:
    """Apply ``curve`` and ``options`` to a socket that is neither bound nor connected yet."""
    if curve is not None:
        _apply_curve(sock, curve)
    if options.zap_domain is not None:
        sock.setsockopt(zmq.ZAP_DOMAIN, options.zap_domain.encode())
    sock.setsockopt(zmq.LINGER, options.linger_ms)
    numeric = (
        (zmq.SNDHWM, options.sndhwm),
        (zmq.RCVHWM, options.rcvhwm),
        (zmq.RECONNECT_IVL, options.reconnect_ivl_ms),
        (zmq.RECONNECT_IVL_MAX, options.reconnect_ivl_max_ms),
        (zmq.HEARTBEAT_IVL, options.heartbeat_ivl_ms),
        (zmq.HEARTBEAT_TIMEOUT, options.heartbeat_timeout_ms),
        (zmq.HEARTBEAT_TTL, options.heartbeat_ttl_ms),
        (zmq.MAXMSGSIZE, options.max_msg_size),
    )
    for option, value in numeric:
        if value is not None:
            sock.setsockopt(option, value)
    if options.immediate:
        sock.setsockopt(zmq.IMMEDIATE, 1)
    if options.router_mandatory:
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    for topic in options.subscribe:
        sock.setsockopt(zmq.SUBSCRIBE, topic)


def open_socket(
    ctx: zmq.Context[SocketT],
    kind: int,
    *,
    options: SocketOptions | None = None,
    curve: Curve | None = None,
    bind: str | None = None,
    connect: str | None = None,
) -> SocketT:
    """A ``kind`` socket from ``ctx``, configured, then bound or connected (exactly one of the two).

    If any step fails the socket is closed before the error propagates: a socket left open would
    keep ``ctx`` from terminating.
    """
    if (bind is None) == (connect is None):
        raise ValueError("open_socket needs exactly one of bind= or connect=")
    sock = ctx.socket(kind)
    try:
        configure(sock, options if options is not None else SocketOptions(), curve)
        if bind is not None:
            sock.bind(bind)
        else:
            assert connect is not None
            sock.connect(connect)
    except BaseException:
        sock.close(linger=0)
        raise
    return sock
