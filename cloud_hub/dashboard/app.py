"""The dashboard's HTTP side: the page at ``/``, its script and styles, and ``/api/summary``.

The page and its static files hold no data and are served to anyone who can reach the port; the
figures need ``Authorization: Bearer <token>`` (the page reads the token from a ``#token=``
fragment, which browsers never send to the server, or from its login box). The summary is built
in a worker thread: its SQLite queries must not stall the hub's event loop, which this app
shares with the link when ``cloud-hub serve --dashboard-port`` runs it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any, Final

from aiohttp import web

from cloud_hub.dashboard.summary import Sources, build_summary
from cloud_hub.dashboard.token import bearer_matches

log = logging.getLogger(__name__)

_STATIC: Final = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}
_SECURITY_HEADERS: Final = {
    # the page runs only its own script and styles, so injected markup could not run anything
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

LiveEdges = Callable[[], Mapping[str, float]]


def _asset(name: str) -> bytes:
    return resources.files("cloud_hub.dashboard").joinpath("static", name).read_bytes()


def _error(status: int, message: str, code: str, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    resp = web.json_response(body, status=status)
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="edgeroute-dashboard"'
    return resp


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: a non-finite figure is reported as unknown."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class Dashboard:
    def __init__(
        self, sources: Sources, token: str, live_edges: LiveEdges | None = None, refresh_s: float = 15.0
    ) -> None:
        self.sources = sources
        self._token = token
        self._live_edges = live_edges
        self.refresh_s = refresh_s
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.app = web.Application()
        self.app.router.add_get("/", self._index)
        self.app.router.add_get("/static/{name}", self._static)
        self.app.router.add_get("/api/summary", self._summary)
        self.app.on_response_prepare.append(self._headers)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: any free port); returns the page's URL."""
        if self._runner is not None:
            raise RuntimeError("dashboard already started")
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.url = f"http://{shown}:{bound[1]}/"
        log.info("dashboard on %s", self.url)
        return self.url

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @staticmethod
    async def _headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(_SECURITY_HEADERS)

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(body=_asset("index.html"), content_type="text/html", charset="utf-8")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC:
            return _error(404, f"no static file {name!r}", "not_found")
        return web.Response(body=_asset(name), content_type=_STATIC[name], charset="utf-8")

    async def _summary(self, request: web.Request) -> web.Response:
        if not bearer_matches(request.headers.get("Authorization"), self._token):
            return _error(
                401, "missing or wrong dashboard token (Authorization: Bearer ...)", "invalid_api_key"
            )
        try:
            hours = float(request.query.get("hours", "24"))
            buckets = int(request.query.get("buckets", "24"))
        except ValueError:
            return _error(400, "hours must be a number and buckets an integer", "invalid_value")
        live = dict(self._live_edges()) if self._live_edges is not None else None
        try:
            summary = await asyncio.to_thread(
                build_summary, self.sources, hours=hours, buckets=buckets, live_edges=live
            )
        except ValueError as exc:
            return _error(400, str(exc), "invalid_value")
        summary["refresh_s"] = self.refresh_s
        body = json.dumps(_finite(summary), allow_nan=False)
        return web.Response(text=body, content_type="application/json", headers={"Cache-Control": "no-store"})
