"""Invite, join and revoke as an operator runs them: a ``cloud-hub serve`` process, the ``cloud-hub``
and ``edge-agent`` commands, and real CURVE links from the edge's side (``HubLink`` with the
files ``join`` wrote, and raw SUB sockets on the global cache).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
import yaml
import zmq

from edge_agent.cli import build_parser, settings_from_args
from edge_agent.hub_link import HubLink
from edge_agent.hub_link.errors import HubLinkError
from edge_agent.join import JoinError, exchange
from shared.codec import Codec
from shared.config import cache_endpoints, enrolment_endpoint
from shared.invite import InviteToken, decode_token, encode_token
from shared.keys import init_keys, load_public, load_secret
from shared.procs import ChildProcess
from shared.sockets import CurveClient, SocketOptions, open_socket
from shared.wire import CacheDelta, ChatMessage, Error, Escalate, Hello, SamplingParams

BIN = Path(sys.executable).parent
HEARTBEAT_S = 0.5


def _free_block(size: int) -> int:
    """A port p with p .. p+size-1 all free (the link, the cache pair, the enrolment socket)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + size >= 65535:
            continue
        try:
            held = []
            for port in range(base, base + size):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return base
    raise RuntimeError("no block of free ports")


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"{args} failed ({done.returncode}): {done.stdout}{done.stderr}")
    return done


@dataclass
class HubProc:
    home: Path
    endpoint: str
    proc: ChildProcess

    def invite(self, *extra: str) -> str:
        return cli("cloud-hub", "invite", "--home", str(self.home), *extra).stdout.strip()

    def join(self, edge_home: Path, token: str) -> subprocess.CompletedProcess[str]:
        return cli("edge-agent", "join", "--home", str(edge_home), "--hub", self.endpoint, token, check=False)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProc]:
    root = tmp_path_factory.mktemp("enrol")
    home = root / "hub"
    cli("cloud-hub", "keys", "init", "--home", str(home))
    config = root / "hub.yaml"
    models = [{"name": "echo", "backend": "echo", "tier": "oss"}]
    # one tenant is enough to share an answer, so a single escalation shows on the cache feed
    settings = {"models": models, "default_model": "echo", "heartbeat_s": HEARTBEAT_S}
    config.write_text(yaml.safe_dump({**settings, "global_cache": {"min_tenants": 1}}))
    endpoint = f"tcp://127.0.0.1:{_free_block(4)}"
    argv = [str(BIN / "cloud-hub"), "serve", "--home", str(home), "--bind", endpoint, "--config", str(config)]
    with ChildProcess("hub", argv, root / "hub.log", ready_prefix="hub ready on ") as proc:
        proc.start(timeout_s=120)
        assert f"enrolment on {enrolment_endpoint(endpoint)}" in proc.output()
        yield HubProc(home, endpoint, proc)


def _escalate(text: str, *, in_s: float = 5.0, family: str = "") -> Escalate:
    messages = [ChatMessage("user", text)]
    params = SamplingParams(temperature=0.0)  # only deterministic answers are shared
    return Escalate(uuid.uuid4().hex, "echo", messages, params, time.time() + in_s, cache_family=family)


async def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def _link_from_join(edge_home: Path) -> HubLink:
    """The link ``edge-agent serve --home EDGE`` would open: hub and key from what join wrote."""
    settings = settings_from_args(build_parser().parse_args(["serve", "--home", str(edge_home)]))
    assert settings.hub_url is not None and settings.hub_public_key_file is not None
    link = HubLink(
        settings.hub_url,
        load_public(settings.hub_public_key_file),
        edge_home / "keys" / "curve.key_secret",
        heartbeat_s=HEARTBEAT_S,
    )
    await link.start()
    return link


def _enrolled_files(hub: HubProc) -> set[str]:
    return {p.name for p in (hub.home / "enrolled").glob("*.key")}


async def test_invite_join_then_the_hub_answers(hub: HubProc, tmp_path: Path) -> None:
    token = hub.invite("--name", "till-1", "--ttl", "10m")
    done = hub.join(tmp_path / "edge", token)
    assert done.returncode == 0, done.stderr
    assert "enrolled as till-1" in done.stdout
    assert f"edge-agent serve --home {tmp_path / 'edge'}" in done.stdout
    link = await _link_from_join(tmp_path / "edge")
    try:
        assert await _wait(lambda: link.connected, 10)
        reply = await link.escalate(_escalate("hello from a joined edge"))
        assert reply.text == "hello from a joined edge"
    finally:
        await link.close()
    listed = cli("cloud-hub", "edges", "--home", str(hub.home)).stdout
    assert "till-1" in listed


async def test_a_reused_token_enrols_nobody_else(hub: HubProc, tmp_path: Path) -> None:
    token = hub.invite("--name", "once")
    assert hub.join(tmp_path / "first", token).returncode == 0
    before = _enrolled_files(hub)
    second = hub.join(tmp_path / "second", token)
    assert second.returncode == 1 and "already used" in second.stderr
    assert _enrolled_files(hub) == before
    # the refused edge cannot reach the link either: its key is on no list
    hub_key = decode_token(token).hub_key.encode()
    _, secret = init_keys(tmp_path / "second" / "keys")
    link = HubLink(hub.endpoint, hub_key, secret, heartbeat_s=HEARTBEAT_S)
    await link.start()
    try:
        assert not await _wait(lambda: link.connected, 3)
    finally:
        await link.close()
    # the edge that used it may run join again (say its reply was lost) and is told it is in
    again = hub.join(tmp_path / "first", token)
    assert again.returncode == 0 and _enrolled_files(hub) == before


def test_an_expired_token_is_refused_by_the_hub(hub: HubProc, tmp_path: Path) -> None:
    token = hub.invite("--ttl", "1s")
    time.sleep(1.2)
    done = hub.join(tmp_path / "late", token)
    assert done.returncode == 1 and "expired" in done.stderr
    # the hub refuses it too, not only the edge's own check of the date in the token
    parsed = decode_token(token)
    _, secret = init_keys(tmp_path / "late" / "keys")
    with pytest.raises(JoinError, match="invite_expired"):
        exchange(enrolment_endpoint(hub.endpoint), parsed, secret, timeout_s=10)


def test_forged_and_foreign_tokens_enrol_nothing(hub: HubProc, tmp_path: Path) -> None:
    parsed = decode_token(hub.invite())
    _, secret = init_keys(tmp_path / "edge" / "keys")
    before = _enrolled_files(hub)
    forged = msgspec.structs.replace(parsed, secret=parsed.secret[:-2] + "AA")
    with pytest.raises(JoinError, match="invite_invalid"):
        exchange(enrolment_endpoint(hub.endpoint), forged, secret, timeout_s=10)
    # a token naming another hub's key: the handshake cannot complete, so the secret never leaves
    foreign = msgspec.structs.replace(parsed, hub_key=zmq.curve_keypair()[0].decode())
    done = hub.join(tmp_path / "edge", encode_token(foreign) + "\n")
    assert done.returncode == 1, done.stdout
    assert "no answer" in done.stderr
    assert _enrolled_files(hub) == before
    # control: the genuine token still works after all that
    assert hub.join(tmp_path / "edge", encode_token(parsed)).returncode == 0


def test_the_enrolment_socket_takes_nothing_but_enrol_requests(hub: HubProc, tmp_path: Path) -> None:
    parsed: InviteToken = decode_token(hub.invite())
    public, secret = load_secret(init_keys(tmp_path / "keys")[1])
    codec = Codec()
    curve = CurveClient(server_key=parsed.hub_key.encode(), public=public, secret=secret)
    with zmq.Context() as ctx:
        sock = open_socket(ctx, zmq.DEALER, curve=curve, connect=enrolment_endpoint(hub.endpoint))
        try:
            sock.send(codec.encode(Hello("edgeroute-edge/0.1")))
            assert sock.poll(10_000)
            answer = codec.decode(sock.recv())
        finally:
            sock.close(linger=0)
    assert isinstance(answer, Error) and answer.code == "unexpected_message"


def _subscriber(ctx: zmq.Context[zmq.Socket[bytes]], hub: HubProc, edge_home: Path) -> zmq.Socket[bytes]:
    public, secret = load_secret(edge_home / "keys" / "curve.key_secret")
    curve = CurveClient(server_key=load_public(edge_home / "keys" / "hub.key"), public=public, secret=secret)
    options = SocketOptions(subscribe=(b"cache",), reconnect_ivl_ms=100)
    return open_socket(ctx, zmq.SUB, options=options, curve=curve, connect=cache_endpoints(hub.endpoint)[0])


def _deltas(sock: zmq.Socket[bytes], wait_s: float) -> list[str]:
    """Questions in the cache deltas that arrive within ``wait_s``."""
    codec, found = Codec(), []
    deadline = time.monotonic() + wait_s
    while (left := deadline - time.monotonic()) > 0:
        if sock.poll(int(left * 1000)):
            body = codec.decode(sock.recv_multipart()[-1])
            if isinstance(body, CacheDelta):
                found += [str(e.get("question", "")) for e in body.entries]
    return found


async def test_revoke_cuts_live_connections_and_refuses_new_ones(hub: HubProc, tmp_path: Path) -> None:
    homes = {name: tmp_path / name for name in ("kept", "gone")}
    for name, home in homes.items():
        assert hub.join(home, hub.invite("--name", name)).returncode == 0
    links = {name: await _link_from_join(home) for name, home in homes.items()}
    with zmq.Context() as ctx:
        subs = {name: _subscriber(ctx, hub, home) for name, home in homes.items()}
        try:
            for link in links.values():
                assert await _wait(lambda link=link: link.connected, 10)  # type: ignore[misc]
            # before: both are answered and both hear what the hub shares
            for name, link in links.items():
                assert (await link.escalate(_escalate(f"ping {name}"))).text == f"ping {name}"
            await asyncio.sleep(0.5)  # subscriptions settle
            await links["kept"].escalate(_escalate("what is tcp", family="echo"))
            heard = {name: await asyncio.to_thread(_deltas, sub, 3.0) for name, sub in subs.items()}
            assert all("what is tcp" in questions for questions in heard.values()), heard

            # off the event loop: the links' heartbeats must keep flowing meanwhile
            done = await asyncio.to_thread(cli, "cloud-hub", "revoke", "--home", str(hub.home), "gone")
            assert "revoked gone" in done.stdout
            await asyncio.sleep(2.0)  # the hub polls its allow-list every second

            # the revoked edge's open connection is answered no more; the kept one is (control)
            with pytest.raises(HubLinkError):  # a timeout, or unavailable once its heartbeats go unanswered
                await links["gone"].escalate(_escalate("still there?", in_s=3))
            assert await _wait(lambda: not links["gone"].connected, 5)
            assert links["kept"].connected
            assert (await links["kept"].escalate(_escalate("still here"))).text == "still here"
            # what the hub shares from now on reaches only the kept edge, once its subscriber has
            # reconnected to the PUB socket the revocation rebound
            heard = {"kept": [], "gone": []}
            for n in range(10):
                await links["kept"].escalate(_escalate(f"what is port {n}", family="echo"))
                for name, sub in subs.items():
                    heard[name] += await asyncio.to_thread(_deltas, sub, 0.5)
                if heard["kept"]:
                    break
            assert heard["kept"] and heard["gone"] == [], heard
        finally:
            for sub in subs.values():
                sub.close(linger=0)
            for link in links.values():
                await link.close()
    # a fresh connection with the revoked key never gets past the handshake
    fresh = await _link_from_join(homes["gone"])
    try:
        assert not await _wait(lambda: fresh.connected, 3)
    finally:
        await fresh.close()
    assert "gone" not in cli("cloud-hub", "edges", "--home", str(hub.home)).stdout
