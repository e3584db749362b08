"""``GET /v1/models``, ``GET /health``, ``GET /metrics`` and ``POST /v1/feedback``.

Feedback is a user's rating of an earlier answer, named by its ``x-request-id``. Ratings are
normalised to [-1, 1]: ``rating`` as is, ``thumbs`` up/down as ±1, ``stars`` 1..5 mapped
linearly; the evaluation loop weighs them next to regenerations and reference checks.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_agent.api.errors import ApiError, from_validation, parse_json_object
from edge_agent.api.state import CONTENT_TYPE, CONTEXT, STATE


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


class FeedbackBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    response_id: Annotated[str, Field(min_length=1, max_length=200)]
    rating: Annotated[float, Field(ge=-1.0, le=1.0)] | None = None
    thumbs: Literal["up", "down"] | None = None
    stars: Annotated[int, Field(ge=1, le=5)] | None = None
    user: Annotated[str, Field(max_length=200)] = ""

    def normalised(self) -> float:
        given = [v for v in (self.rating, self.thumbs, self.stars) if v is not None]
        if len(given) != 1:
            raise ApiError(400, "send exactly one of rating, thumbs or stars", param="rating")
        if self.rating is not None:
            return self.rating
        if self.thumbs is not None:
            return 1.0 if self.thumbs == "up" else -1.0
        assert self.stars is not None
        return (self.stars - 3) / 2


async def feedback(request: web.Request) -> web.Response:
    recorder = request.app[STATE].feedback
    if recorder is None:
        raise ApiError(404, "feedback is not enabled on this agent", code="feedback_disabled")
    try:
        body = FeedbackBody.model_validate(parse_json_object(await request.read()))
    except ValidationError as exc:
        raise from_validation(exc) from None
    rating = body.normalised()
    ctx = request[CONTEXT]
    recorder.feedback(body.response_id, rating, tenant=ctx.tenant_hash, user=body.user)
    return web.json_response({"object": "feedback", "response_id": body.response_id, "rating": rating})
