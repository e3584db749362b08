"""T15 (unknown, plain and garbage peers reach no handler) and T16 (no pickle anywhere).

T15 points hostile peers at a real hub: a CURVE client whose key is not enrolled, a DEALER with no
CURVE at all, raw TCP garbage, a 10 MB blob and a crowd of idle connections. None may get a
frame back or reach the hub's message handler (the hub records every edge that reaches it), the
ZAP denial must be logged, and an enrolled edge must still be served. The negative control runs
the same unknown peer against the same hub with its authenticator left out: then it is served.

T16 walks the source tree's syntax for every way to unpickle (``pickle``, ``dill``,
``cloudpickle``, ``recv_pyobj``, ``yaml.load`` without a safe loader, ``torch.load`` without
``weights_only``, ``numpy.load(allow_pickle=True)``), then sends a live pickle payload and
msgpack extension frames to a hub: each must be refused as a ``DecodeFailure`` and the payload's
canary file must never appear. The control shows the gate flags planted code and that the
payload is live: unpickled in a throwaway process, it creates the canary.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import os
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import zmq
import zmq.asyncio

from cloud_hub.reliability.harness import Peer, counting_logs, start_hub
from shared.codec import Codec, DecodeFailure
from shared.hubproc import LinkKeys
from shared.keys import fingerprint, init_keys, load_public
from shared.paths import REPO_ROOT
from shared.reliability import Report, Result, Size, pick
from shared.wire import ChatMessage, Error, Escalate, Heartbeat, Hello, Ready, SamplingParams

T15_NAME = "unknown-key, plain and garbage peers reach no handler"
T16_NAME = "no pickle anywhere; pickle and ext-type frames refused"


def _escalate(n: int) -> Escalate:
    msgs = [ChatMessage(role="user", content=f"probe {n}")]
    return Escalate(request_id=f"probe-{n}", model="", messages=msgs, params=SamplingParams(), deadline=9e9)


async def _probe(peer: Peer, tries: int = 3) -> int:
    """Say Hello and ask; how many frames came back."""
    got = 0
    for i in range(tries):
        # a DEALER without a completed handshake blocks a send: give up quickly, that is the point
        await peer.send_raw(peer.codec.encode(Hello("attacker")), 0.3)
        await peer.send_raw(peer.codec.encode(_escalate(i)), 0.3)
        if await peer.recv(0.5) is not None:
            got += 1
    return got


def _garbage(port: int, rng: random.Random, blob_mb: int) -> tuple[int, int, int]:
    """Raw TCP: random bytes, a fake ZMTP greeting, a large blob: (bytes sent, back, connections)."""
    sent = back = 0
    payloads = [rng.randbytes(512), b"\xff" + b"\x00" * 8 + b"\x7f\x03\x00CURVE" + rng.randbytes(64)]
    payloads.append(rng.randbytes(blob_mb * 1024 * 1024))
    for data in payloads:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            with contextlib.suppress(OSError):
                s.sendall(data)
                sent += len(data)
            s.settimeout(0.5)
            with contextlib.suppress(OSError):
                while chunk := s.recv(65536):
                    back += len(chunk)
                    if back > 1 << 20:
                        break
    return sent, back, len(payloads)


@contextlib.contextmanager
def _idle(port: int, n: int) -> Iterator[list[socket.socket]]:
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(n)]
    try:
        yield held
    finally:
        for s in held:
            s.close()


class _NoAuthenticator:
    """Stands in for ``cloud_hub.auth.Enrolments`` in the negative control: no ZAP handler at all."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        return None

    def start(self) -> None:
        return None

    def reload(self) -> int:
        return 0

    def admits(self, user_id: str) -> bool:
        return True

    async def close(self) -> None:
        return None


async def _attack(size: Size, keys: LinkKeys, stranger_secret: Path, r: Report) -> None:
    rng = random.Random(15)
    ctx = zmq.asyncio.Context()
    try:
        with counting_logs("cloud_hub.zap", "cloud_hub.server") as logs:
            hub = await start_hub(keys)
            port = int(hub.endpoint.rsplit(":", 1)[1])
            try:
                unknown = Peer(ctx, hub.endpoint, keys.hub_public, stranger_secret)
                plain = Peer(ctx, hub.endpoint, None, None)
                unknown_back = await _probe(unknown)
                plain_back = await _probe(plain)
                failed_auth = zmq.EVENT_HANDSHAKE_FAILED_AUTH in await unknown.drain_events(1.0)
                unknown.close()
                plain.close()
                with _idle(port, pick(size, 50, 200, 500)) as held:
                    sent, back, conns = await asyncio.to_thread(_garbage, port, rng, pick(size, 2, 10, 10))
                    friend = Peer(ctx, hub.endpoint, keys.hub_public, keys.edge_secret_file)
                    await friend.send(Hello("friend"))
                    ready = isinstance(await friend.recv(5), Ready)
                    await friend.send(Heartbeat(sent_at=1.0))
                    alive = isinstance(await friend.recv(5), Heartbeat)
                    friend.close()
                    idle = len(held)
                friend_id = fingerprint(load_public(keys.edge_public_file))
                reached = sorted(e for e in hub.edges if e != friend_id)
            finally:
                await hub.close()
    finally:
        ctx.term()
    r.figure(
        attempts=3 + 3 + conns + idle,
        frames_back_unknown_key=unknown_back,
        frames_back_plain=plain_back,
        garbage_bytes_sent=sent,
        garbage_bytes_back=back,
        idle_connections=idle,
        handler_reached_by_strangers=len(reached),
        handshake_failed_auth=failed_auth,
        zap_denials_logged=logs.matching("DENIED"),
        enrolled_edge_served=ready and alive,
    )
    r.require(unknown_back == 0 and plain_back == 0, "a stranger got a frame back")
    r.require(not reached, f"strangers reached the handler: {reached}")
    # libzmq greets every TCP connection with its 64-byte ZMTP greeting, and nothing more
    r.require(back <= 64 * conns, f"the hub sent {back} bytes to {conns} garbage connections")
    r.require(failed_auth, "the unknown key's handshake did not fail on authentication")
    r.require(logs.matching("DENIED") > 0, "no ZAP denial was logged")
    r.require(ready and alive, "the enrolled edge was not served while under attack")
    r.require(
        zmq.zmq_version_info() >= (4, 3, 2), f"libzmq {zmq.zmq_version()} predates CVE-2019-13132's fix"
    )


async def _control(keys: LinkKeys, stranger_secret: Path, r: Report) -> None:
    """The same stranger against the same hub with no authenticator: it must get through."""
    ctx = zmq.asyncio.Context()
    try:
        hub = await start_hub(keys, authenticator=_NoAuthenticator)
        try:
            peer = Peer(ctx, hub.endpoint, keys.hub_public, stranger_secret)
            back = await _probe(peer)
            peer.close()
            reached = bool(hub.edges)
        finally:
            await hub.close()
    finally:
        ctx.term()
    r.figure(control_frames_back=back, control_reached_handler=reached)
    r.control(back > 0 and reached, "the authenticator")


def t15_peers(size: Size, work: Path) -> Result:
    r = Report("T15", T15_NAME)
    keys = LinkKeys.make(work / "keys")
    _, stranger_secret = init_keys(work / "stranger")
    # one event loop per hub: a hub started after another closed on the same loop can miss frames
    asyncio.run(_attack(size, keys, stranger_secret, r))
    asyncio.run(_control(keys, stranger_secret, r))
    return r.result()


# --- T16 --------------------------------------------------------------------------------------

SOURCE_DIRS = ("shared", "edge_agent", "cloud_hub", "models")
_BANNED_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "joblib", "diskcache"}
_BANNED_CALLS = {"recv_pyobj", "send_pyobj", "recv_serialized", "send_serialized"}


def _kw(node: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in node.keywords if k.arg == name), None)


def _call_violation(node: ast.Call) -> str | None:
    """What is wrong with a call, if it may unpickle."""
    if not isinstance(node.func, ast.Attribute):
        return None
    attr, owner = node.func.attr, node.func.value
    base = owner.id if isinstance(owner, ast.Name) else ""
    if attr in _BANNED_CALLS:
        return f".{attr}()"
    if base == "yaml" and attr in ("load", "load_all", "unsafe_load", "full_load"):
        loader = _kw(node, "Loader")
        safe = isinstance(loader, ast.Attribute) and loader.attr in ("SafeLoader", "CSafeLoader")
        return None if safe else f"yaml.{attr}() without a safe loader"
    if base == "torch" and attr == "load":
        flag = _kw(node, "weights_only")
        return (
            None
            if isinstance(flag, ast.Constant) and flag.value is True
            else "torch.load() without weights_only=True"
        )
    if attr == "load" and base in ("np", "numpy"):
        flag = _kw(node, "allow_pickle")
        return (
            "numpy.load(allow_pickle=True)" if isinstance(flag, ast.Constant) and flag.value is True else None
        )
    return None


def pickle_violations(source: str, filename: str = "<source>") -> list[str]:
    """Every place in ``source`` that imports an unpickler or calls a loader that may unpickle."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [
                f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in _BANNED_MODULES
            ]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in _BANNED_MODULES:
            found.append(f"{where}: from {node.module} import")
        elif isinstance(node, ast.Call) and (why := _call_violation(node)) is not None:
            found.append(f"{where}: {why}")
    return found


def scan_sources(root: Path = REPO_ROOT) -> tuple[int, list[str]]:
    """(files scanned, violations). This module is left out: it names what it looks for."""
    files, found = 0, []
    for top in SOURCE_DIRS:
        for path in sorted((root / top).rglob("*.py")):
            if path.resolve() == Path(__file__).resolve():
                continue
            files += 1
            found += pickle_violations(path.read_text(), str(path.relative_to(root)))
    return files, found


def pickle_bomb(canary: Path) -> bytes:
    """A protocol-0 pickle that runs ``os.system("touch <canary>")`` when unpickled, built by hand
    so nothing here imports an unpickler."""
    command = f"touch {canary}".encode()
    return b"cos\nsystem\n(S'" + command + b"'\ntR."


def ext_frames() -> list[bytes]:
    """msgpack extension types (fixext 1/2/4/8/16, ext 8/16/32), bare and inside a valid envelope."""
    bare = [
        b"\xd4\x01\x00",
        b"\xd5\x02\x00\x00",
        b"\xd6\x03" + b"\x00" * 4,
        b"\xd7\xff" + b"\x00" * 8,  # the timestamp extension
        b"\xd8\x05" + b"\x00" * 16,
        b"\xc7\x03\x06abc",
        b"\xc8\x00\x03\x07abc",
        b"\xc9\x00\x00\x00\x03\x08abc",
    ]
    # {"v": 1, "body": <ext>}: the envelope is right, its body is an extension object
    wrapped = [b"\x82\xa1v\x01\xa4body" + e for e in bare]
    return bare + wrapped


def _live_control(work: Path) -> bool:
    """Unpickle the payload in a throwaway interpreter: the canary appears (the payload is live)."""
    canary = work / "control-canary"
    code = "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"
    subprocess.run(
        [sys.executable, "-c", code], input=pickle_bomb(canary), capture_output=True, check=False, timeout=60
    )
    return canary.exists()


async def _runtime(work: Path) -> tuple[int, int, int, bool]:
    """(frames sent, typed refusals received, frames handled otherwise, canary created)."""
    canary = work / "canary"
    frames = [pickle_bomb(canary), *ext_frames()]
    codec = Codec()
    typed = 0
    for frame in frames:
        try:
            codec.decode(frame)
        except DecodeFailure:
            typed += 1
    keys = LinkKeys.make(work / "keys")
    hub = await start_hub(keys)
    ctx = zmq.asyncio.Context()
    refused = other = 0
    try:
        peer = Peer(ctx, hub.endpoint, keys.hub_public, keys.edge_secret_file)
        for frame in frames:
            await peer.send_raw(frame)
            reply = await peer.recv(5)
            if isinstance(reply, Error) and reply.code in ("malformed", "invalid"):
                refused += 1
            else:
                other += 1
        peer.close()
    finally:
        await hub.close()
        ctx.term()
    await asyncio.sleep(0.2)
    return len(frames), min(typed, refused), other, canary.exists()


def t16_no_pickle(size: Size, work: Path) -> Result:
    r = Report("T16", T16_NAME)
    files, found = scan_sources()
    r.figure(files_scanned=files, pickle_sites=len(found))
    r.require(not found, "; ".join(found[:5]))
    planted = pickle_violations(
        "import pickle\nimport yaml\nyaml.load(s)\nsock.recv_pyobj()\n"
        "torch.load(f)\nnp.load(f, allow_pickle=True)\n"
    )
    r.control(len(planted) == 5, "the source gate (planted unpicklers)")
    sent, refused, other, canary = asyncio.run(_runtime(work))
    live = _live_control(work)
    r.figure(
        frames_sent=sent,
        frames_refused_typed=refused,
        frames_handled=other,
        canary_created=canary,
        payload_live=live,
    )
    r.require(
        refused == sent and other == 0, f"{sent - refused} hostile frames were not refused as DecodeFailure"
    )
    r.require(not canary, "the pickle payload ran: the canary file exists")
    r.control(live, "decoding by pickle (the payload unpickled in a throwaway process)")
    with contextlib.suppress(OSError):
        os.remove(work / "control-canary")
    return r.result()
