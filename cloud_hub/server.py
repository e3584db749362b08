"""The hub's end of the link: a CURVE-secured ZeroMQ ROUTER serving enrolled edges.

One receive loop decodes frames and never waits on a model: each escalation runs as its own
task, so heartbeats, telemetry and other edges' requests keep flowing while a backend works. The
edge's identity is the public key its CURVE handshake proved (ZAP ``User-Id``), never a payload
field. A bad frame costs its sender one typed ``Error`` reply and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq
import zmq.asyncio

from cloud_hub import HUB_VERSION
from cloud_hub.auth import Authenticator, AuthenticatorFactory, Enrolments
from cloud_hub.cache.judging import Overloaded as JudgeOverloaded
from cloud_hub.cache.sharing import GlobalCache
from cloud_hub.dispatch import Dispatcher
from cloud_hub.policy_feed import PolicyFeed
from cloud_hub.registry import ModelRegistry
from cloud_hub.sink import MemorySink, TelemetrySink
from shared.codec import DEFAULT_MAX_FRAME, Codec, DecodeFailure
from shared.keys import fingerprint, load_secret
from shared.sockets import CurveServer, SocketOptions, frame_ceiling, open_socket
from shared.wire import (
    Body,
    CacheJudgeRequest,
    Cancel,
    Error,
    Escalate,
    Heartbeat,
    Hello,
    MediaFetch,
    MediaJob,
    MediaPoll,
    Ready,
    Reply,
    TelemetryBatch,
)

if TYPE_CHECKING:  # the image stack imports numpy and Pillow; a text-only hub never needs them
    from cloud_hub.images.jobs import MediaJobs

log = logging.getLogger(__name__)
# the hub beats to edges it heard from within this long; quieter ones have gone or will say Hello
_BEAT_HORIZON_S = 60.0


class Hub:
    def __init__(
        self,
        *,
        bind: str,
        secret_key_file: Path,
        enrolled_dir: Path,
        registry: ModelRegistry,
        sink: TelemetrySink | None = None,
        heartbeat_s: float = 2.0,
        max_frame: int = DEFAULT_MAX_FRAME,
        enrol_poll_s: float = 1.0,
        policy_file: Path | None = None,
        policy_poll_s: float = 1.0,
        max_inflight: int = 256,
        global_cache: GlobalCache | None = None,
        media: MediaJobs | None = None,
        authenticator: AuthenticatorFactory = Enrolments,
    ) -> None:
        self._bind = bind
        self._public, self._secret = load_secret(secret_key_file)
        self._enrolled_dir = enrolled_dir
        self._enrol_poll_s = enrol_poll_s
        self.registry = registry
        self.sink: TelemetrySink = sink if sink is not None else MemorySink()
        self._dispatcher = Dispatcher(registry)
        self._policy = PolicyFeed(policy_file) if policy_file is not None else None
        self._policy_poll_s = policy_poll_s
        self._peers: dict[str, bytes] = {}  # edge id → routing id of its latest connection
        self.global_cache = global_cache
        self.media = media  # image and video jobs (HubSettings.images); None: refused
        self._heartbeat_s = heartbeat_s
        self._max_inflight = max_inflight
        self._inflight = 0
        self._codec = Codec(max_frame)
        self._context: zmq.asyncio.Context | None = None
        self._socket: zmq.asyncio.Socket | None = None
        self._authenticator = authenticator
        self._enrolments: Authenticator | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._work: dict[tuple[str, str], asyncio.Task[None]] = {}  # (edge id, request id) → task
        self.edges: dict[str, float] = {}  # edge id → wall-clock time last heard from
        # replies that never left: "not_reading" (the edge's queue was full), "unroutable" (gone)
        self.undelivered: dict[str, int] = {"not_reading": 0, "unroutable": 0}
        self.bad_frames = 0  # frames refused by the codec, from any edge
        self.endpoint = ""
        self._closed = False

    async def start(self) -> str:
        """Bind and start serving; returns the bound endpoint (port 0 becomes the real port)."""
        if self._context is not None:
            raise RuntimeError("hub already started")
        self._context = zmq.asyncio.Context()
        self._enrolments = self._authenticator(
            self._context, self._enrolled_dir, self._enrol_poll_s, on_revoked=self._on_revoked
        )
        self._enrolments.start()
        options = SocketOptions(
            # the codec answers oversized frames itself up to this ceiling; libzmq drops bigger senders
            max_msg_size=frame_ceiling(self._codec.max_frame),
            linger_ms=0,
            # Replies to an edge that has gone raise instead of vanishing, so we can log them.
            router_mandatory=True,
        )
        curve = CurveServer(public=self._public, secret=self._secret)
        sock = open_socket(self._context, zmq.ROUTER, options=options, curve=curve, bind=self._bind)
        self._socket = sock
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        if self.global_cache is not None:
            # a sync view of the same libzmq context: the ZAP allow-list covers these sockets too
            shadow: zmq.Context[zmq.Socket[bytes]] = zmq.Context.shadow(self._context.underlying)
            try:
                self.global_cache.bind(shadow, self.endpoint, self._public, self._secret)
            except (zmq.ZMQError, ValueError) as exc:
                # answering edges matters more than sharing answers: serve on, without publishing
                log.error("global cache not published (set global_cache.pub_bind/snapshot_bind): %s", exc)
        self._loop_task = asyncio.get_running_loop().create_task(self._serve(), name="hub-recv")
        if self._policy is not None:
            self._policy.refresh()
            self._spawn(self._watch_policy())
        self._spawn(self._beat())
        log.info("hub serving on %s with models %s", self.endpoint, ", ".join(self.registry.names))
        return self.endpoint

    def reload_enrolments(self) -> int:
        if self._enrolments is None:
            raise RuntimeError("hub not started")
        return self._enrolments.reload()

    async def _serve(self) -> None:
        assert self._socket is not None
        while True:
            frames = await self._socket.recv_multipart(copy=False)
            if self._enrolments is not None and not self._enrolments.admits(_user_id(frames[-1])):
                continue  # revoked since its handshake: the connection gets nothing more from this hub
            try:
                self._on_message(frames)
            except Exception:
                log.exception("dropping a message that could not be handled")

    def _on_message(self, frames: list[zmq.Frame]) -> None:
        routing_id = frames[0].bytes
        payload = frames[-1]
        edge_id = _edge_id(payload)
        self.edges[edge_id] = time.time()
        self._peers[edge_id] = routing_id
        if len(frames) != 2:
            self._reply(routing_id, Error("", "malformed", f"expected one frame, got {len(frames) - 1}"))
            return
        try:
            body = self._codec.decode(payload.buffer)
        except DecodeFailure as exc:
            self._bad_frame(edge_id, exc)
            self._reply(routing_id, Error("", exc.code, exc.message))
            return
        self._dispatch(body, edge_id, routing_id)

    def _dispatch(self, body: Body, edge_id: str, routing_id: bytes) -> None:
        if isinstance(body, Heartbeat):
            self._reply(routing_id, Heartbeat(sent_at=body.sent_at))
        elif isinstance(body, Hello):
            self._greet(body, edge_id, routing_id)
        elif isinstance(body, Escalate):
            self._admit(body, edge_id, routing_id)
        elif isinstance(body, Cancel):
            # keyed by the authenticated edge: an edge can only cancel its own work
            if (work := self._work.get((edge_id, body.request_id))) is not None:
                work.cancel()
        elif isinstance(body, TelemetryBatch):
            self._ingest(routing_id, edge_id, body)
        elif isinstance(body, CacheJudgeRequest):
            self._spawn(self._judge_candidate(body, edge_id, routing_id))
        elif isinstance(body, MediaJob | MediaPoll | MediaFetch):
            self._media(body, edge_id, routing_id)
        else:
            message = f"the hub does not accept {type(body).__name__} messages"
            self._reply(routing_id, Error(_request_id(body), "unexpected_message", message))

    def _greet(self, body: Hello, edge_id: str, routing_id: bytes) -> None:
        log.info("edge %s connected (agent %s)", edge_id, body.agent_version)
        media = self.media.models if self.media is not None else []
        self._reply(routing_id, Ready(HUB_VERSION, self._heartbeat_s, self.registry.names, media))
        if self._policy is not None and self._policy.current is not None:
            self._reply(routing_id, self._policy.current)

    def _admit(self, body: Escalate, edge_id: str, routing_id: bytes) -> None:
        if self._inflight >= self._max_inflight:
            busy = f"the hub is at its limit of {self._max_inflight} requests in flight"
            self._reply(routing_id, Error(body.request_id, "overloaded", busy, retryable=True))
            return
        key = (edge_id, body.request_id)
        if key in self._work:
            message = f"request {body.request_id!r} is already in progress"
            self._reply(routing_id, Error(body.request_id, "duplicate_request", message))
            return
        self._inflight += 1  # counted now: the task may not start before the next frame is read
        task = self._spawn(self._escalation(body, edge_id, routing_id))
        self._work[key] = task
        task.add_done_callback(lambda _t: self._work.pop(key, None))

    def _media(self, body: MediaJob | MediaPoll | MediaFetch, edge_id: str, routing_id: bytes) -> None:
        if self.media is None:
            refusal = Error(body.request_id, "unknown_model", "this hub serves no images or video")
            self._reply(routing_id, refusal)
        else:
            self._spawn(self.media.handle(edge_id, body, lambda out: self._send(routing_id, out)))

    def _on_revoked(self, keys: frozenset[bytes]) -> None:
        """Stop serving revoked edges now: their work in flight, their policy pushes, and their
        global-cache connections (which ZAP, judging handshakes only, would leave up)."""
        gone = {fingerprint(key) for key in keys}
        for (edge_id, _request), task in list(self._work.items()):
            if edge_id in gone:
                task.cancel()
        for edge_id in gone:
            self._peers.pop(edge_id, None)
        if self.global_cache is not None and self.global_cache.publisher is not None:
            self.global_cache.publisher.drop_connections()

    async def _beat(self) -> None:
        """Beat to every edge heard from lately (Paranoid Pirate: both ends beat). An edge that is
        pushing a large frame up hears nothing else from the hub until that frame is through, and
        would call a healthy hub dead; the hub's own beats come down the idle direction."""
        while True:
            await asyncio.sleep(self._heartbeat_s)
            recent = time.time() - _BEAT_HORIZON_S
            for edge_id, routing_id in list(self._peers.items()):
                if self.edges.get(edge_id, 0.0) >= recent:
                    await self._send(routing_id, Heartbeat(sent_at=time.time(), from_hub=True))

    async def _watch_policy(self) -> None:
        assert self._policy is not None
        while True:
            await asyncio.sleep(self._policy_poll_s)
            if self._policy.refresh() and self._policy.current is not None:
                for routing_id in list(self._peers.values()):
                    await self._send(routing_id, self._policy.current)

    async def _escalation(self, req: Escalate, edge_id: str, routing_id: bytes) -> None:
        async def send(out: Body) -> None:
            await self._send(routing_id, out)
            if isinstance(out, Reply) and self.global_cache is not None:
                try:  # after the send: sharing must never delay or fail the reply itself
                    await self.global_cache.observe(req, edge_id, out)
                except Exception:
                    log.exception("global cache could not take request %s", req.request_id)

        try:
            await self._dispatcher.handle(req, edge_id, send)
        finally:
            self._inflight -= 1

    async def _judge_candidate(self, req: CacheJudgeRequest, edge_id: str, routing_id: bytes) -> None:
        """A grey-zone candidate from an edge: the judge's verdict (and, when approved, an alias in
        the global cache for that edge's tenant), or a typed error."""
        judging = self.global_cache.judging if self.global_cache is not None else None
        if judging is None:
            refusal = Error(req.judge_id, "unsupported", "this hub judges no cache candidates")
            await self._send(routing_id, refusal)
            return
        try:
            verdict: Body = await judging.handle(req, edge_id)
        except JudgeOverloaded as exc:
            verdict = Error(req.judge_id, "overloaded", str(exc), retryable=True)
        except Exception as exc:
            log.exception("cache judge failed on %s", req.judge_id)
            verdict = Error(req.judge_id, "judge_error", f"{type(exc).__name__}: {exc}", retryable=True)
        await self._send(routing_id, verdict)

    def _ingest(self, routing_id: bytes, edge_id: str, batch: TelemetryBatch) -> None:
        try:
            ack = self.sink.ingest(edge_id, batch)
        except Exception as exc:
            log.exception("telemetry sink failed on batch %s", batch.batch_id)
            self._reply(routing_id, Error(batch.batch_id, "sink_error", str(exc), retryable=True))
            return
        self._reply(routing_id, ack)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _reply(self, routing_id: bytes, body: Body) -> None:
        self._spawn(self._send(routing_id, body))

    def _bad_frame(self, edge_id: str, exc: DecodeFailure) -> None:
        self.bad_frames += 1
        n = self.bad_frames
        if n & (n - 1) == 0:  # 1st, 2nd, 4th, ...: a fuzzing or broken peer cannot fill the log
            log.info("bad frame from edge %s: %s (%d bad frames so far)", edge_id, exc, n)

    async def _send(self, routing_id: bytes, body: Body) -> None:
        if self._socket is None or self._closed:
            return
        try:
            frame = self._codec.encode(body)
        except DecodeFailure as exc:
            request_id = _request_id(body)
            frame = self._codec.encode(Error(request_id, exc.code, f"the hub's answer was too large: {exc}"))
        try:
            # Never wait here: a ROUTER cannot signal per-peer room, so an edge that stopped
            # reading (high-water mark) loses this reply and times out rather than stall us.
            await self._socket.send_multipart([routing_id, frame], flags=zmq.NOBLOCK)
        except zmq.Again:
            self.undelivered["not_reading"] += 1
            n = self.undelivered["not_reading"]
            if n & (n - 1) == 0:  # 1st, 2nd, 4th, 8th, ...: a peer that never reads cannot flood the log
                log.warning(
                    "edge is not reading; dropped a %s (%d replies dropped so far)", type(body).__name__, n
                )
        except zmq.ZMQError as exc:
            self.undelivered["unroutable"] += 1
            log.debug("reply to a departed edge dropped: %s", exc)

    async def close(self) -> None:
        """Stop serving and drop in-flight work; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._loop_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.global_cache is not None:
            self.global_cache.close()  # its sockets must be closed before the context terminates
        if self._enrolments is not None:
            await self._enrolments.close()
        if self._socket is not None:
            self._socket.close(linger=0)
        if self._context is not None:
            self._context.term()
        log.info("hub on %s stopped", self.endpoint)


def _user_id(frame: zmq.Frame) -> str:
    try:
        user_id = frame.get("User-Id")
    except zmq.ZMQError:
        return ""
    return user_id if isinstance(user_id, str) else ""


def _edge_id(frame: zmq.Frame) -> str:
    try:
        user_id = frame.get("User-Id")
    except zmq.ZMQError:
        return "unauthenticated"
    return fingerprint(user_id.encode("ascii")) if isinstance(user_id, str) and user_id else "unauthenticated"


def _request_id(body: Body) -> str:
    return str(getattr(body, "request_id", "") or getattr(body, "batch_id", ""))
