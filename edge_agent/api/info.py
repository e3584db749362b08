"""``GET /v1/models``, ``GET /health``, ``GET /metrics``."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from edge_agent.api.state import STATE
from edge_agent.metrics import CONTENT_TYPE


async def models(request: web.Request) -> web.Response:
    state = request.app[STATE]
    created = int(state.started_at)
    data: list[dict[str, Any]] = [
        {"id": state.local_model, "object": "model", "created": created, "owned_by": "edge"},
        {"id": "auto", "object": "model", "created": created, "owned_by": "edgeroute"},
    ]
    if state.hub is not None:
        data.append({"id": "hub", "object": "model", "created": created, "owned_by": "hub"})
        for name in state.hub_models():
            data.append({"id": name, "object": "model", "created": created, "owned_by": "hub"})
    return web.json_response({"object": "list", "data": data})


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    hub = state.hub
    hub_status = "not_configured" if hub is None else ("connected" if hub.connected else "disconnected")
    body = {
        "status": "ok",
        "model": state.local_model,
        "hub": hub_status,
        "uptime_s": round(time.time() - state.started_at, 3),
    }
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.Response(body=state.metrics.render(), headers={"Content-Type": CONTENT_TYPE})
