"""Host and Origin checks: a web page cannot reach the agent through a rebound DNS name.

The agent listens on loopback, so a browser on the same machine can reach it, and a page from
any site can make the browser resolve its own name to 127.0.0.1 (DNS rebinding) and send
requests that carry the page's ``Host`` and ``Origin``. A request is therefore served only when
its ``Host`` names the agent as it is really addressed: an IP literal, ``localhost``, or a name
in ``allowed_hosts`` (``.example.com`` admits its subdomains; ``*`` turns the check off). An
``Origin`` header, which only browsers send, must name such a host too; ``Origin: null``
(sandboxed frames, local files) is refused. Clients that are not browsers send no ``Origin``
and an IP or ``localhost`` host (or, over HTTP/1.0, no ``Host``), and notice nothing.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

_LOCAL_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def _hostname(host: str) -> str | None:
    """The name part of a ``Host`` value (``[::1]:8080`` → ``::1``); None when unparsable."""
    try:
        parts = urlsplit(f"//{host}")
        return (parts.hostname or "").rstrip(".").lower() or None
    except ValueError:
        return None


def allowed_name(name: str, allowed: Sequence[str]) -> bool:
    if name in _LOCAL_NAMES:
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    for entry in allowed:
        entry = entry.lower().rstrip(".")
        if name == entry or (entry.startswith(".") and name.endswith(entry)):
            return True
    return False


def host_refusal(host: str | None, origin: str | None, allowed: Sequence[str]) -> str | None:
    """Why a request with these headers must be refused, or None to serve it."""
    return _refusal(host, origin, tuple(allowed))


# clients send the same few Host values on every request; parsing one (an IP literal, a URL
# split) cost 4 us. Bounded: a client cycling names only evicts its own.
@functools.lru_cache(maxsize=1024)
def _refusal(host: str | None, origin: str | None, allowed: tuple[str, ...]) -> str | None:
    if "*" in allowed:
        return None
    # no Host at all is an HTTP/1.0 client, not a browser: rebinding needs a browser's Host
    name = _hostname(host) if host is not None else ""
    if name is None or (name and not allowed_name(name, allowed)):
        return "This server does not answer to that Host name; use 127.0.0.1, localhost or an allowed host."
    if origin is None:
        return None
    origin_name = _hostname(urlsplit(origin).netloc) if origin != "null" else None
    if origin_name is None or not allowed_name(origin_name, allowed):
        return "Requests from this Origin are not allowed."
    return None
