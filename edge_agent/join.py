"""``edge-agent join --home DIR [--hub tcp://HOST:PORT] TOKEN``: enrol this edge with a hub.

The token (``cloud-hub invite``) carries the hub's public key, so the CURVE connection to the
hub's enrolment socket (the link's port+3) only completes with that hub; the hub reads this
edge's key from the same handshake and puts it on its allow-list. Afterwards the hub's key is in
``<home>/keys/hub.key`` and the link endpoint in ``<home>/hub.json``, which ``edge-agent serve``
reads when it is given no ``--hub`` / ``--hub-key`` (flags, environment and config still win).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import zmq

from edge_agent.hub_link.link import AGENT_VERSION
from shared.codec import Codec, DecodeFailure
from shared.config import EdgeSettings, enrolment_endpoint
from shared.invite import InviteToken, InviteTokenError, decode_token
from shared.keys import init_keys, load_secret
from shared.sockets import CurveClient, SocketOptions, open_socket
from shared.wire import EnrolReply, EnrolRequest, Error

JOINED_FILE = "hub.json"
HUB_KEY_FILE = "hub.key"


class JoinError(RuntimeError):
    """Enrolment did not happen; the message says what to check."""


class Joined(msgspec.Struct, frozen=True):
    """What ``join`` learnt: where the hub is and which key it proved, and who we are to it."""

    hub_url: str
    hub_public_key_file: str  # relative to the edge home
    edge_id: str
    name: str = ""
    joined_at: float = 0.0


def load_joined(home: Path) -> Joined | None:
    path = home / JOINED_FILE
    if not path.is_file():
        return None
    try:
        return msgspec.json.decode(path.read_bytes(), type=Joined)
    except msgspec.DecodeError as exc:
        raise ValueError(f"{path} is damaged ({exc}); run `edge-agent join` again") from None


def apply_joined(settings: EdgeSettings) -> EdgeSettings:
    """Fill the hub endpoint and key that ``join`` recorded into settings that name neither."""
    joined = load_joined(settings.home)
    if joined is None:
        return settings
    update: dict[str, object] = {}
    if settings.hub_public_key_file is None:
        update["hub_public_key_file"] = settings.home / joined.hub_public_key_file
    if not settings.hub_url:
        update["hub_url"] = joined.hub_url
    return settings.model_copy(update=update) if update else settings


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def exchange(endpoint: str, token: InviteToken, secret_key_file: Path, timeout_s: float) -> EnrolReply:
    """One enrol request to the hub at ``endpoint`` over CURVE pinned to the token's hub key."""
    public, secret = load_secret(secret_key_file)
    codec = Codec()
    curve = CurveClient(server_key=token.hub_key.encode("ascii"), public=public, secret=secret)
    with zmq.Context() as ctx:
        sock = open_socket(ctx, zmq.DEALER, options=SocketOptions(linger_ms=0), curve=curve, connect=endpoint)
        try:
            request = EnrolRequest(token.invite_id, token.secret, agent_version=AGENT_VERSION)
            sock.send(codec.encode(request))
            if not sock.poll(int(timeout_s * 1000)):
                raise JoinError(
                    f"no answer from the hub's enrolment socket {endpoint} within {timeout_s:g} s: is the "
                    "hub running, is that port (the link's port+3) reachable from here, and is the "
                    "token from this hub? (a token from another hub fails the CURVE handshake silently)"
                )
            try:
                body = codec.decode(sock.recv())
            except DecodeFailure as exc:
                raise JoinError(f"the hub sent an unreadable answer: {exc}") from None
        finally:
            sock.close(linger=0)
    if isinstance(body, Error):
        raise JoinError(f"the hub refused: {body.message} ({body.code})")
    if not isinstance(body, EnrolReply):
        raise JoinError(f"the hub answered {type(body).__name__}, not an enrolment")
    return body


def join(
    home: Path,
    token_text: str,
    *,
    hub_url: str | None = None,
    enrol_at: str | None = None,
    timeout_s: float = 15.0,
) -> Joined:
    """Enrol with the hub the token names; writes the hub's key and endpoint under ``home``."""
    token = decode_token(token_text)
    link = hub_url or token.hub
    if not link:
        raise JoinError("this token names no hub endpoint: pass --hub tcp://HUB-HOST:PORT")
    if token.expires_at and token.expires_at < time.time():
        raise JoinError("this invite has expired; ask the hub's operator for a new one")
    endpoint = enrol_at or enrolment_endpoint(link)
    keys_dir = home / "keys"
    _, secret_file = init_keys(keys_dir)
    reply = exchange(endpoint, token, secret_file, timeout_s)
    hub_key = keys_dir / HUB_KEY_FILE
    _write_atomic(
        hub_key,
        f"# the hub at {link}, from an invite, proved by its CURVE handshake\n"
        f'curve\n    public-key = "{token.hub_key}"\n',
    )
    joined = Joined(
        hub_url=link,
        hub_public_key_file=str(hub_key.relative_to(home)),
        edge_id=reply.edge_id,
        name=reply.name,
        joined_at=time.time(),
    )
    _write_atomic(home / JOINED_FILE, msgspec.json.format(msgspec.json.encode(joined)).decode() + "\n")
    return joined


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", type=Path, required=True, help="edge home directory")
    parser.add_argument("--hub", help="the hub's link endpoint, tcp://HOST:PORT (default: the token's)")
    parser.add_argument(
        "--enrol-endpoint", help="the hub's enrolment socket, when it is not at the link's port+3"
    )
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the hub")
    parser.add_argument("token", metavar="TOKEN", help="from `cloud-hub invite` ('-': read stdin)")


def run(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.token == "-" else args.token
    try:
        joined = join(args.home, text, hub_url=args.hub, enrol_at=args.enrol_endpoint, timeout_s=args.timeout)
    except (InviteTokenError, JoinError, ValueError) as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
    label = f"{joined.name} ({joined.edge_id})" if joined.name else joined.edge_id
    print(f"enrolled as {label} with the hub at {joined.hub_url}")
    print(f"hub key: {args.home / joined.hub_public_key_file}")
    print(f"start the agent: edge-agent serve --home {args.home}")
    return 0
