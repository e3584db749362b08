"""The hub's enrolment socket: where ``edge-agent join`` redeems an invite (the link's port+3).

Why a socket of its own rather than letting unknown keys onto the link: the link's ZAP allow-list
stays exactly the enrolled keys, and it also guards the global cache's PUB and snapshot sockets in
the same ZeroMQ context, so admitting strangers there would make every handler, present and
future, responsible for turning them away. Here the only thing a stranger can do is one thing: a
separate context carries a ZAP handler that admits any CURVE key (the handshake still proves the
key and encrypts the exchange), and this loop answers ``EnrolRequest`` alone, with small frames.
An edge's key becomes an allow-list file only when its request carries a valid, unexpired, unused
invite; the hub's link then admits it after an immediate reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import zmq
import zmq.asyncio
from zmq.auth import CURVE_ALLOW_ANY
from zmq.auth.asyncio import AsyncioAuthenticator

from cloud_hub import HUB_VERSION
from cloud_hub.enrolment.invites import Invite, InviteRefused, InviteStore
from shared.codec import Codec, DecodeFailure
from shared.config import HubSettings, enrolment_endpoint
from shared.keys import KeyFileError, enroll_key, fingerprint, load_public, load_secret
from shared.sockets import CurveServer, SocketOptions, frame_ceiling, open_socket
from shared.wire import Body, EnrolReply, EnrolRequest, Error

log = logging.getLogger(__name__)

MAX_ENROL_FRAME = 16 * 1024  # a request is a few hundred bytes; nothing bigger is read


class EnrolmentServer:
    def __init__(
        self,
        *,
        bind: str,
        public: bytes,
        secret: bytes,
        invites: InviteStore,
        enrolled_dir: Path,
        on_enrolled: Callable[[], object] | None = None,
    ) -> None:
        self._bind = bind
        self._public, self._secret = public, secret
        self._invites = invites
        self._enrolled_dir = enrolled_dir
        self._on_enrolled = on_enrolled
        self._codec = Codec(MAX_ENROL_FRAME)
        self._context: zmq.asyncio.Context | None = None
        self._auth: AsyncioAuthenticator | None = None
        self._socket: zmq.asyncio.Socket | None = None
        self._task: asyncio.Task[None] | None = None
        self.endpoint = ""

    async def start(self) -> str:
        self._context = zmq.asyncio.Context()
        # installed before the bind, so no handshake completes without a User-Id (the edge's key)
        self._auth = AsyncioAuthenticator(self._context, log=logging.getLogger("cloud_hub.zap.enrol"))
        self._auth.start()
        self._auth.configure_curve(domain="*", location=CURVE_ALLOW_ANY)
        options = SocketOptions(linger_ms=0, max_msg_size=frame_ceiling(MAX_ENROL_FRAME), sndhwm=16)
        curve = CurveServer(public=self._public, secret=self._secret)
        try:
            self._socket = open_socket(
                self._context, zmq.ROUTER, options=options, curve=curve, bind=self._bind
            )
        except BaseException:
            await self.close()
            raise
        self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="enrolment")
        log.info("enrolment on %s", self.endpoint)
        return self.endpoint

    async def _serve(self) -> None:
        assert self._socket is not None
        while True:
            frames = await self._socket.recv_multipart(copy=False)
            try:
                reply = await self._handle(frames)
            except Exception:
                log.exception("enrolment request could not be handled")
                reply = Error("", "enrolment_failed", "the hub could not enrol this edge; see its log")
            await self._send(frames[0].bytes, reply)

    async def _handle(self, frames: list[zmq.Frame]) -> Body:
        if len(frames) != 2:
            return Error("", "malformed", f"expected one frame, got {len(frames) - 1}")
        user_id = frames[1].get("User-Id")
        if not isinstance(user_id, str) or not user_id:
            return Error("", "unauthenticated", "no CURVE key on this connection")
        key = user_id.encode("ascii")
        try:
            body = self._codec.decode(frames[1].buffer)
        except DecodeFailure as exc:
            return Error("", exc.code, exc.message)
        if not isinstance(body, EnrolRequest):
            return Error("", "unexpected_message", "the enrolment socket takes enrol requests only")
        edge_id = fingerprint(key)

        def enrol(invite: Invite) -> None:
            enroll_key(key, self._enrolled_dir, source=f"invite {invite.invite_id}", name=invite.name)

        try:
            invite, already = await asyncio.to_thread(
                self._invites.redeem, body.invite_id, body.secret, key, enrol=enrol, is_enrolled=self._holds
            )
        except InviteRefused as exc:
            log.warning("enrolment refused for key %s: %s", edge_id, exc.code)
            return Error("", exc.code, exc.message)
        except KeyFileError as exc:
            return Error("", "enrolment_failed", str(exc))
        if self._on_enrolled is not None:
            self._on_enrolled()  # the link admits the key now rather than at its next poll
        log.info("edge %s enrolled as %r with invite %s", edge_id, invite.name, invite.invite_id)
        return EnrolReply(edge_id=edge_id, name=invite.name, hub_version=HUB_VERSION, already=already)

    def _holds(self, key: bytes) -> bool:
        for path in self._enrolled_dir.glob("*.key"):
            with contextlib.suppress(KeyFileError):
                if load_public(path) == key:
                    return True
        return False

    async def _send(self, routing_id: bytes, body: Body) -> None:
        if self._socket is None:
            return
        with contextlib.suppress(zmq.Again, zmq.ZMQError):  # the edge left; it sees a timeout
            await self._socket.send_multipart([routing_id, self._codec.encode(body)], flags=zmq.NOBLOCK)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._context is not None:
            self._context.term()
            self._context = None
        self._invites.close()


async def open_enrolment(
    settings: HubSettings, secret_key_file: Path, link_endpoint: str, on_enrolled: Callable[[], object]
) -> EnrolmentServer | None:
    """The enrolment socket ``settings`` asks for (None when off), next to the bound link endpoint;
    it prints ``enrolment on <endpoint>`` once open.

    A hub that cannot open it still serves its enrolled edges: enrolment is how edges arrive, not
    how they are answered, and ``cloud-hub enroll`` remains the way in meanwhile."""
    if settings.enrolment_bind == "off":
        return None
    try:
        bind = settings.enrolment_bind or enrolment_endpoint(link_endpoint)
    except ValueError as exc:
        log.error("no enrolment socket (set enrolment_bind): %s", exc)
        return None
    public, secret = load_secret(secret_key_file)
    server = EnrolmentServer(
        bind=bind,
        public=public,
        secret=secret,
        invites=InviteStore.open(settings.home),
        enrolled_dir=settings.enrolled_dir,
        on_enrolled=on_enrolled,
    )
    try:
        await server.start()
    except zmq.ZMQError as exc:
        log.error('no enrolment socket on %s (set enrolment_bind, or "off"): %s', bind, exc)
        return None
    print(f"enrolment on {server.endpoint}", flush=True)  # `cloud-hub serve`'s output, before "ready"
    return server


async def close_enrolment(server: EnrolmentServer | None) -> None:
    if server is not None:
        await server.close()
