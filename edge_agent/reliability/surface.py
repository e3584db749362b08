"""T25–T27: what a client can make the router do beyond answering it.

T25: no request can choose where the router connects. ``base_url``/``api_base`` at the top level,
in ``extra_body``-style fields, inside our ``edgeroute`` extension and inside nested objects, and
in headers, pointing at a listener standing in for 127.0.0.1, the cloud metadata address and a
private range: each is refused or ignored, and the listener is never contacted, not even through
the hub's upstream answering with a redirect. T26: the defaults bind loopback only (checked on a
running hub's sockets too), and a rebound DNS name in ``Host`` or a foreign ``Origin`` is refused.
T27: API keys are compared in constant time, and after a run with keys, wrong keys, e-mail
addresses and key-like strings in prompts, none of them is in any log, spool or telemetry store.
T28 (requests over the limits) is ``edge_agent.reliability.limits``.
"""

from __future__ import annotations

import ast
import asyncio
import logging
from pathlib import Path
from typing import Any

import aiohttp

from edge_agent.reliability.harness import (
    EchoModel,
    EdgeOptions,
    HubAccess,
    chat,
    post_chat,
    settle,
    start_edge,
    wait_connected,
)
from shared.config import EdgeSettings, GlobalCacheSettings, HubSettings, cache_endpoints
from shared.hubproc import HubServer, LinkKeys
from shared.paths import REPO_ROOT
from shared.reliability import Report, Result, Size, listening_addresses, pick, scan_for
from shared.upstream import ScriptedUpstream, model_entries
from shared.wire import Escalate

T25_NAME = "client-supplied base URLs refused"
T26_NAME = "loopback binds and Host/Origin checks"
T27_NAME = "constant-time key compare; secrets never in logs or telemetry"


class Listener:
    """A TCP port that counts every connection made to it: the target an SSRF would reach."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._seen, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return f"http://127.0.0.1:{self.port}/v1"

    async def _seen(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def _ssrf_bodies(target: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
    urls = [
        target,
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/v1",
        "http://localtest.me/v1",
    ]
    out: list[tuple[dict[str, str], dict[str, Any]]] = []
    for url in urls:
        for extra in (
            {"base_url": url},
            {"api_base": url},
            {"extra_body": {"base_url": url}},
            {"edgeroute": {"base_url": url}},
            {"edgeroute": {"hub_model": url}},
            {"metadata": {"base_url": url}},
            {"response_format": {"type": "text", "base_url": url}},
            {"prediction": {"type": "content", "content": url}},
            {"model": url},
        ):
            out.append(({}, extra))
        out.append(({"x-edgeroute-hub": url, "OpenAI-Base-URL": url, "X-Forwarded-Host": url}, {}))
    return out


async def _t25(size: Size, work: Path, r: Report) -> None:
    listener = Listener()
    target = await listener.start()
    upstream = ScriptedUpstream()
    await upstream.start()
    upstream.script("frontier", f"redirect:{target}")
    keys = LinkKeys.make(work / "keys")
    hub = HubServer(keys, models=model_entries(upstream.base_url, ["frontier"]), default_model="frontier")
    await asyncio.to_thread(hub.start)
    edge = await start_edge(work / "edge", EchoModel(), EdgeOptions(hub=HubAccess(hub.endpoint, keys)))
    refused = ignored = other = 0
    try:
        await wait_connected(edge)
        async with aiohttp.ClientSession() as http:
            for headers, extra in _ssrf_bodies(target):
                for route in ("edge_local", "hub"):
                    body = chat("where do you connect?", **extra)
                    got = await post_chat(http, edge.base_url, body, {**headers, "x-edgeroute-route": route})
                    refused += 400 <= got.status < 500
                    ignored += got.status == 200
                    other += got.status >= 500
            # the hub's own upstream redirects: the hub must not follow it
            redirected = await post_chat(http, edge.base_url, chat("follow me"), {"x-edgeroute-route": "hub"})
        await asyncio.sleep(0.5)
        fields = {f for f in Escalate.__struct_fields__}
    finally:
        await edge.close()
        await asyncio.to_thread(hub.stop)
        await upstream.close()
    via_upstream = len(upstream.calls_to("frontier"))
    # the control: the listener does count a connection when one is made
    before = listener.connections
    _, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.close()
    await asyncio.sleep(0.1)
    counted = listener.connections - before
    await listener.close()
    url_fields = sorted(f for f in fields if any(w in f for w in ("url", "base", "endpoint", "host")))
    r.figure(
        attempts=refused + ignored + other,
        refused_4xx=refused,
        answered_ignoring_it=ignored,
        server_errors=other,
        connections_to_target=before,
        redirect_followed=before > 0,
        upstream_calls=via_upstream,
        redirected_status=redirected.status,
        url_fields_on_the_wire=len(url_fields),
        control_connection_counted=counted,
    )
    r.require(before == 0, f"the target was contacted {before} times")
    r.require(other == 0, f"{other} SSRF attempts got a 5xx")
    r.require(not url_fields, f"escalations carry address fields: {url_fields}")
    r.require(via_upstream >= 1, "the redirecting upstream was never called")
    r.control(counted == 1, "the connection counter")


def t25_base_urls(size: Size, work: Path) -> Result:
    r = Report("T25", T25_NAME)
    asyncio.run(_t25(size, work, r))
    return r.result()


# --- T26 --------------------------------------------------------------------------------------


def _loopback(addr: str) -> bool:
    return addr.startswith("127.") or addr == "::1"


async def _t26(size: Size, work: Path, r: Report) -> None:
    edge_default = EdgeSettings().host
    hub_default = HubSettings().bind
    pub, snap = cache_endpoints(hub_default)
    cache = GlobalCacheSettings()
    static_ok = _loopback(edge_default) and "127.0.0.1" in hub_default and "127.0.0.1" in pub + snap
    keys = LinkKeys.make(work / "keys")
    hub = HubServer(keys, global_cache=True, extra={"global_cache": {"enabled": True}})
    await asyncio.to_thread(hub.start)
    try:
        assert hub.pid is not None
        listening = listening_addresses(hub.pid)
    finally:
        await asyncio.to_thread(hub.stop)
    exposed = [f"{ip}:{port}" for ip, port in listening if not _loopback(ip)]
    edge = await start_edge(work / "edge", EchoModel(), EdgeOptions())
    open_edge = await start_edge(
        work / "open", EchoModel(), EdgeOptions(settings={"allowed_hosts": ["rebind.example"]})
    )
    cases = {
        "rebound Host": ({"Host": "rebind.example"}, 403),
        "foreign Origin": ({"Origin": "http://rebind.example"}, 403),
        "null Origin": ({"Origin": "null"}, 403),
        "loopback Host": ({"Host": "127.0.0.1"}, 200),
        "localhost Host and Origin": ({"Host": "localhost", "Origin": "http://localhost:3000"}, 200),
    }
    wrong = 0
    try:
        async with aiohttp.ClientSession() as http:
            for name, (headers, want) in cases.items():
                got = await post_chat(http, edge.base_url, chat(f"hello from {name}"), headers)
                if got.status != want:
                    wrong += 1
                    r.require(False, f"{name}: {got.status}, expected {want}")
            # control: the same rebound Host passes where the operator allowed the name
            control = await post_chat(http, open_edge.base_url, chat("hello"), {"Host": "rebind.example"})
    finally:
        await edge.close()
        await open_edge.close()
    r.figure(
        edge_default_host=edge_default,
        hub_default_bind=hub_default,
        global_cache_binds_default=str(cache.pub_bind or pub),
        hub_listening_sockets=len(listening),
        exposed_sockets=len(exposed),
        header_cases=len(cases),
        header_cases_wrong=wrong,
        control_status=control.status,
    )
    r.require(static_ok, "a default bind is not loopback")
    r.require(not exposed, f"the hub listens beyond loopback: {exposed}")
    r.require(len(listening) >= 3, "the hub's sockets were not found")
    r.control(control.status == 200, "the Host check (an allowed name passes)")


def t26_binds(size: Size, work: Path) -> Result:
    r = Report("T26", T26_NAME)
    asyncio.run(_t26(size, work, r))
    return r.result()


# --- T27 --------------------------------------------------------------------------------------

_SECRET_NAMES = ("api_key", "secret", "password", "token", "secret_key")


def _secretish(node: ast.expr) -> bool:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr == "get_secret_value"
    name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
    return name.lower().endswith(_SECRET_NAMES)


def plain_comparisons(source: str, filename: str = "<source>") -> list[str]:
    """``==``/``!=`` between a secret (a key, token, password) and another value that is not a
    literal: a comparison whose time tells an attacker how much of the secret they guessed."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Compare) or not any(
            isinstance(op, ast.Eq | ast.NotEq) for op in node.ops
        ):
            continue
        sides = [node.left, *node.comparators]
        if any(_secretish(s) for s in sides) and not any(isinstance(s, ast.Constant) for s in sides):
            found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
    return found


def scan_comparisons() -> tuple[int, list[str], bool]:
    files, found = 0, []
    for top in ("shared", "edge_agent", "cloud_hub"):
        for path in sorted((REPO_ROOT / top).rglob("*.py")):
            if path.resolve() == Path(__file__).resolve():
                continue
            files += 1
            found += plain_comparisons(path.read_text(), str(path.relative_to(REPO_ROOT)))
    tenancy = (REPO_ROOT / "edge_agent" / "tenancy.py").read_text()
    return files, found, "hmac.compare_digest(" in tenancy


async def _t27(size: Size, work: Path, r: Report) -> None:
    key = "sk-live-Q7hJ2mR9vX4kL8pN3wZ6"
    wrong = "sk-live-WRONGwrongWRONG0000"
    email = "jane.doe.secret@example.org"
    fake = "sk-proj-AAAABBBBCCCCDDDDEEEE1234"
    log_file = work / "edge.log"
    handler = logging.FileHandler(log_file)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    keys = LinkKeys.make(work / "keys")
    hub = HubServer(keys)
    await asyncio.to_thread(hub.start)
    edge = await start_edge(
        work / "edge", EchoModel(), EdgeOptions(tenants={"acme": key}, hub=HubAccess(hub.endpoint, keys))
    )
    sent = 0
    try:
        await wait_connected(edge)
        async with aiohttp.ClientSession() as http:
            for i in range(pick(size, 10, 50, 200)):
                prompt = f"mail {email} my key {fake} please, item {i}"
                for route in ("edge_local", "hub"):
                    await post_chat(
                        http,
                        edge.base_url,
                        chat(prompt),
                        {"Authorization": f"Bearer {key}", "x-edgeroute-route": route},
                    )
                    await post_chat(http, edge.base_url, chat(prompt), {"Authorization": f"Bearer {wrong}"})
                    await post_chat(
                        http, edge.base_url, chat(prompt, temperature=9), {"Authorization": f"Bearer {key}"}
                    )
                    sent += 3
        await settle(edge)
        assert edge.deliverer is not None
        await edge.deliverer.drain(30)
    finally:
        await edge.close()
        await asyncio.to_thread(hub.stop)
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    places = [log_file, work / "edge" / "telemetry.db", hub.log_path, hub.telemetry_db.parent]
    places += [p for p in (work / "edge").glob("telemetry.db-*")]
    found = scan_for([key, wrong, email, fake], places)
    planted = work / "planted.log"
    planted.write_text(f"oops {key}\n")
    control = scan_for([key], [planted])[key]
    files, plain, digest_used = scan_comparisons()
    gate = plain_comparisons("if presented == tenant.api_key.get_secret_value():\n    pass\n")
    r.figure(
        requests=sent,
        api_key_occurrences=found[key],
        wrong_key_occurrences=found[wrong],
        email_occurrences=found[email],
        key_in_prompt_occurrences=found[fake],
        places_scanned=len(places),
        files_scanned=files,
        plain_secret_comparisons=len(plain),
        compare_digest_in_tenancy=digest_used,
        control_planted_found=control,
    )
    r.require(sum(found.values()) == 0, f"secrets found in logs or telemetry: {found}")
    r.require(digest_used, "edge_agent/tenancy.py no longer compares keys with hmac.compare_digest")
    r.require(not plain, "; ".join(plain[:3]))
    r.control(control == 1, "the secret scan (a planted key)")
    r.control(len(gate) == 1, "the comparison gate (a planted ==)")


def t27_secrets(size: Size, work: Path) -> Result:
    r = Report("T27", T27_NAME)
    asyncio.run(_t27(size, work, r))
    return r.result()
