"""HubLink: escalations, streams and telemetry to the hub over one CURVE-secured DEALER socket.

ZeroMQ reconnects by itself; liveness is ours to track. The link says Hello until the hub answers
Ready, then sends a Heartbeat every interval; any valid frame from the hub counts as a sign of
life. After three silent intervals ``connected`` turns False, calls fail fast with
``HubUnavailable`` and calls in flight are failed at once rather than left to their deadlines.
Everything runs on the caller's event loop and nothing in it blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import zmq
import zmq.asyncio

from edge_agent.hub_link.errors import REFUSAL_CODES, HubError, HubRefused, HubTimeout, HubUnavailable
from shared.codec import DEFAULT_MAX_FRAME, Codec, DecodeFailure
from shared.keys import load_secret
from shared.sockets import CurveClient, SocketOptions, frame_ceiling, open_socket
from shared.wire import (
    Body,
    CacheJudgeRequest,
    CacheJudgeVerdict,
    Cancel,
    Error,
    Escalate,
    Heartbeat,
    Hello,
    MediaChunk,
    MediaFetch,
    MediaJob,
    MediaPoll,
    MediaStatus,
    PolicyUpdate,
    Ready,
    Reply,
    ReplyChunk,
    TelemetryAck,
    TelemetryBatch,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

AGENT_VERSION = "edgeroute-edge/0.1"
_MISSED_BEATS = 3
StreamItem = ReplyChunk | Reply


def _failure(err: Error) -> HubError:
    if err.code == "deadline_exceeded":
        return HubTimeout(err.message)
    if err.code in REFUSAL_CODES:
        return HubRefused(err.code, err.message)
    return HubError(err.code, err.message, retryable=err.retryable)


class HubLink:
    def __init__(
        self,
        url: str,
        hub_public_key: bytes,
        secret_key_file: Path,
        *,
        heartbeat_s: float = 2.0,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.url = url
        self._hub_key = hub_public_key
        self._public, self._secret = load_secret(secret_key_file)
        self.heartbeat_s = heartbeat_s
        self._codec = Codec(max_frame)
        self._context: zmq.asyncio.Context | None = None
        self._socket: zmq.asyncio.Socket | None = None
        self._recv_task: asyncio.Task[None] | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._opened_at = 0.0
        # a socket that has not reached the hub for this long is replaced (see _reopen_socket)
        self.reopen_after_s = max(5.0, 2 * _MISSED_BEATS * heartbeat_s)
        self._calls: dict[str, asyncio.Future[Reply]] = {}
        self._streams: dict[str, asyncio.Queue[StreamItem | BaseException]] = {}
        self._acks: dict[str, asyncio.Future[TelemetryAck]] = {}
        self._media: dict[str, asyncio.Future[MediaStatus | MediaChunk]] = {}
        self._verdicts: dict[str, asyncio.Future[CacheJudgeVerdict]] = {}
        self._last_seen: float | None = None  # monotonic time of the last valid frame from the hub
        self.hub_models: list[str] = []
        self.media_models: list[str] = []  # listed by /v1/models; never a chat target
        self.hub_version = ""
        self.rtt_s: float | None = None  # from the last heartbeat echo
        self.policy: PolicyUpdate | None = None  # the hub's routing policy, once it sent one
        self._closed = False

    async def start(self) -> None:
        """Connect in the background and return at once; watch ``connected`` for the outcome."""
        if self._context is not None or self._closed:
            raise RuntimeError("HubLink.start() may be called once, before close()")
        self._context = zmq.asyncio.Context()
        self._open_socket()
        self._keepalive_task = asyncio.get_running_loop().create_task(
            self._keepalive(), name="hub-link-keepalive"
        )

    def _open_socket(self) -> None:
        assert self._context is not None
        options = SocketOptions(
            # Queue only onto a live connection: while the hub is away a send fails at once
            # instead of parking stale heartbeats and requests for a hub that may come back later.
            immediate=True,
            linger_ms=0,
            reconnect_ivl_ms=100,
            reconnect_ivl_max_ms=2000,
            # ZMTP heartbeats make libzmq drop a half-open TCP connection (hub host gone without a
            # FIN) and reconnect, instead of queueing into it until the high-water mark.
            heartbeat_ivl_ms=int(self.heartbeat_s * 1000),
            heartbeat_timeout_ms=int(self.heartbeat_s * 1000 * _MISSED_BEATS),
            max_msg_size=frame_ceiling(self._codec.max_frame),
        )
        curve = CurveClient(server_key=self._hub_key, public=self._public, secret=self._secret)
        sock = open_socket(self._context, zmq.DEALER, options=options, curve=curve, connect=self.url)
        self._socket = sock
        self._opened_at = time.monotonic()
        self._recv_task = asyncio.get_running_loop().create_task(self._receive(sock), name="hub-link-recv")

    async def _reopen_socket(self) -> None:
        # libzmq gives up for good on a connection whose handshake was refused (key not yet
        # enrolled, hub keys rotated); only a fresh socket tries again.
        log.warning(
            "no answer from the hub at %s for %.0fs (hub down, or this edge's key not enrolled: "
            "`cloud-hub enroll`); reconnecting",
            self.url,
            time.monotonic() - self._opened_at,
        )
        await self._stop_receiving()
        self._open_socket()

    async def _stop_receiving(self) -> None:
        if self._recv_task is not None:
            self._recv_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recv_task
            self._recv_task = None
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    @property
    def connected(self) -> bool:
        seen = self._last_seen
        return seen is not None and time.monotonic() - seen <= _MISSED_BEATS * self.heartbeat_s

    # --- calls --------------------------------------------------------------------------------

    async def escalate(self, req: Escalate) -> Reply:
        """The hub's answer; ``HubUnavailable`` / ``HubTimeout`` (at ``req.deadline``) / ``HubError``."""
        if req.stream:
            req = msgspec.structs.replace(req, stream=False)
        self._check_new(req.request_id)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._calls[req.request_id] = future
        try:
            await self._send(req)
            async with asyncio.timeout(req.deadline - time.time()):
                return await future
        except TimeoutError:
            self._cancel_remote(req.request_id)
            raise HubTimeout(f"no answer from the hub by the deadline of {req.request_id}") from None
        except asyncio.CancelledError:
            self._cancel_remote(req.request_id)
            raise
        finally:
            self._calls.pop(req.request_id, None)

    async def stream(self, req: Escalate) -> AsyncGenerator[StreamItem, None]:
        """``ReplyChunk`` deltas in order, then the final ``Reply`` with usage, cost and trace."""
        if not req.stream:
            req = msgspec.structs.replace(req, stream=True)
        self._check_new(req.request_id)
        queue: asyncio.Queue[StreamItem | BaseException] = asyncio.Queue()
        self._streams[req.request_id] = queue
        finished = False
        try:
            await self._send(req)
            while True:
                try:
                    async with asyncio.timeout(req.deadline - time.time()):
                        item = await queue.get()
                except TimeoutError:
                    raise HubTimeout(f"stream {req.request_id} did not finish by its deadline") from None
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                if isinstance(item, Reply):
                    finished = True
                yield item
                if finished:
                    return
        finally:
            self._streams.pop(req.request_id, None)
            if not finished:  # timed out, or the consumer stopped reading (client went away)
                self._cancel_remote(req.request_id)

    async def send_telemetry(self, batch: TelemetryBatch, timeout: float) -> TelemetryAck:
        what = f"an ack for telemetry batch {batch.batch_id}"
        return await self._exchange(self._acks, batch.batch_id, batch, timeout, what)

    async def judge(self, req: CacheJudgeRequest, timeout: float) -> CacheJudgeVerdict:
        """The hub judge's verdict on a grey-zone cache candidate; raises as ``send_telemetry`` does."""
        what = f"a verdict on cache candidate {req.judge_id}"
        return await self._exchange(self._verdicts, req.judge_id, req, timeout, what)

    @property
    def max_frame(self) -> int:
        """The largest frame this end decodes: media answers and chunks are sized to it."""
        return self._codec.max_frame

    async def media(
        self, body: MediaJob | MediaPoll | MediaFetch, timeout: float
    ) -> MediaStatus | MediaChunk:
        """One image/video exchange (``edge_agent.hub_link.media`` drives them): a job submitted,
        polled, or a chunk of its result fetched; raises as ``escalate`` does."""
        what = f"an answer to {body.request_id}"
        return await self._exchange(self._media, body.request_id, body, timeout, what)

    async def _exchange(
        self, waiting: dict[str, asyncio.Future[T]], key: str, body: Body, timeout: float, what: str
    ) -> T:
        """Send one message and wait for the single answer ``_dispatch`` files under ``key``."""
        if key in waiting:
            raise ValueError(f"{key!r} is already in flight")
        if not self.connected:
            raise HubUnavailable(f"hub at {self.url} is not connected")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        waiting[key] = future
        try:
            await self._send(body)
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise HubTimeout(f"no {what} within {timeout:.1f}s") from None
        finally:
            waiting.pop(key, None)

    def _cancel_remote(self, request_id: str) -> None:
        """Tell the hub to stop work nobody will read; best effort, never raises or waits."""
        if self._socket is None or self._closed or not self.connected:
            return

        async def send() -> None:
            with contextlib.suppress(HubUnavailable, HubError):
                await self._send(Cancel(request_id))

        task = asyncio.get_running_loop().create_task(send())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _check_new(self, request_id: str) -> None:
        if request_id in self._calls or request_id in self._streams:
            raise ValueError(f"request {request_id!r} is already in flight")
        if not self.connected:
            raise HubUnavailable(f"hub at {self.url} is not connected")

    async def _send(self, body: Body) -> None:
        if self._socket is None or self._closed:
            raise HubUnavailable("hub link is not started or already closed")
        try:
            frame = self._codec.encode(body)
        except DecodeFailure as exc:
            raise HubError(exc.code, f"request not sent: {exc.message}") from None
        try:
            await self._socket.send(frame, flags=zmq.NOBLOCK)
        except zmq.Again:
            raise HubUnavailable(f"no live connection to the hub at {self.url}") from None

    # --- background ---------------------------------------------------------------------------

    async def _keepalive(self) -> None:
        was_connected = False
        while True:
            now_connected = self.connected
            if was_connected and not now_connected:
                log.warning("hub at %s stopped answering; failing calls in flight", self.url)
                self._fail_all(HubUnavailable(f"hub at {self.url} stopped answering heartbeats"))
            was_connected = now_connected
            silent_s = time.monotonic() - max(self._opened_at, self._last_seen or 0.0)
            if not now_connected and silent_s > self.reopen_after_s:
                await self._reopen_socket()
            ping: Body = Heartbeat(sent_at=time.time()) if now_connected else Hello(AGENT_VERSION)
            with contextlib.suppress(HubUnavailable):
                await self._send(ping)
            # Probe often while (re)connecting so a returning hub is noticed within ~0.1 s.
            await asyncio.sleep(self.heartbeat_s if now_connected else min(0.1, self.heartbeat_s))

    async def _receive(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            frame = await sock.recv(copy=False)
            try:
                body = self._codec.decode(frame.buffer)
            except DecodeFailure as exc:
                log.warning("unreadable frame from the hub: %s", exc)
                continue
            first = self._last_seen is None or not self.connected
            self._last_seen = time.monotonic()
            if first:
                log.info("hub at %s is reachable", self.url)
            self._dispatch(body)

    def _dispatch(self, body: Body) -> None:
        if isinstance(body, Heartbeat):
            if not body.from_hub:  # the hub's own beat only says it is alive (``_receive`` noted it)
                self.rtt_s = max(0.0, time.time() - body.sent_at)
        elif isinstance(body, Ready):
            self.hub_models, self.hub_version = list(body.models), body.hub_version
            self.media_models = list(body.media_models)
        elif isinstance(body, PolicyUpdate):
            self._on_policy(body)
        elif isinstance(body, ReplyChunk | Reply):
            self._deliver(body.request_id, body)
        elif isinstance(body, MediaStatus | MediaChunk):
            _settle(self._media.get(body.request_id), body)
        elif isinstance(body, TelemetryAck):
            _settle(self._acks.get(body.batch_id), body)
        elif isinstance(body, CacheJudgeVerdict):
            _settle(self._verdicts.get(body.judge_id), body)
        elif isinstance(body, Error):
            self._on_error(body)
        else:
            log.warning("ignoring unexpected %s from the hub", type(body).__name__)

    def _on_policy(self, body: PolicyUpdate) -> None:
        if body != self.policy:
            log.info("hub routing policy %s (canary %s)", body.version, body.canary_version or "none")
        self.policy = body

    def current_policy(self) -> PolicyUpdate | None:
        return self.policy

    def _deliver(self, request_id: str, item: StreamItem | BaseException) -> None:
        queue = self._streams.get(request_id)
        if queue is not None:
            queue.put_nowait(item)
            return
        call = self._calls.get(request_id)
        if call is None or call.done():
            return  # the caller gave up (deadline) before the hub answered
        if isinstance(item, Reply):
            call.set_result(item)
        elif isinstance(item, BaseException):
            call.set_exception(item)

    def _on_error(self, err: Error) -> None:
        if err.request_id in self._calls or err.request_id in self._streams:
            self._deliver(err.request_id, _failure(err))
            return
        for waiting in (self._acks, self._media, self._verdicts):
            if (waiter := waiting.get(err.request_id)) is not None and not waiter.done():
                waiter.set_exception(_failure(err))
                return
        log.warning("hub reported %s: %s", err.code, err.message)

    def _fail_all(self, exc: HubUnavailable) -> None:
        waiters: list[asyncio.Future[Any]] = [*self._calls.values(), *self._acks.values()]
        for waiter in [*waiters, *self._media.values(), *self._verdicts.values()]:
            if not waiter.done():
                waiter.set_exception(exc)
        for queue in self._streams.values():
            queue.put_nowait(exc)

    async def close(self) -> None:
        """Stop the link and fail anything in flight with ``HubUnavailable``; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._last_seen = None
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive_task
        await self._stop_receiving()
        self._fail_all(HubUnavailable("hub link closed"))
        if self._context is not None:
            self._context.term()


def _settle(waiter: asyncio.Future[Any] | None, body: Body) -> None:
    """Answer the caller waiting on this id, unless it already gave up."""
    if waiter is not None and not waiter.done():
        waiter.set_result(body)
