"""``GET /v1/models[/{model}]``, ``GET /health``, ``GET /metrics`` and ``POST /v1/feedback``.

Feedback is a user's rating of an earlier answer, named by its ``x-request-id``. Ratings are
normalised to [-1, 1]: ``rating`` as is, ``thumbs`` up/down as ±1, ``stars`` 1..5 mapped
linearly; the evaluation loop weighs them next to regenerations and reference checks.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_agent.api.errors import ApiError, from_validation, parse_json_object, printable
from edge_agent.api.state import CONTENT_TYPE, CONTEXT, STATE, AgentState
from shared.taxonomy import AUTO_MODEL, AUTO_MODELS, HUB_MODEL, named_hub_model


def _listed(state: AgentState) -> list[dict[str, Any]]:
    created = int(state.started_at)

    def entry(model: str, owner: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": created, "owned_by": owner}

    data = [entry(state.local_model, "edge"), entry(AUTO_MODEL, "edgeroute")]
    if state.embeddings is not None:
        data.append(entry(state.embeddings.name, "edge"))
    if state.hub is not None:
        data.append(entry(HUB_MODEL, "hub"))
        data.extend(entry(name, "hub") for name in state.hub_models())
        text = set(state.hub_models())
        media = dict.fromkeys(m for m in state.media_models() if m not in text)  # one entry per name
        data.extend(entry(name, "hub") for name in media)
    return data


async def models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": _listed(request.app[STATE])})


async def model(request: web.Request) -> web.Response:
    """One model of the list, also by the ``hub:<name>`` and alias ids chat requests accept."""
    state = request.app[STATE]
    wanted = request.match_info["model"]
    by_id = {m["id"]: m for m in _listed(state)}
    named = named_hub_model(wanted)
    found = by_id.get(wanted)
    if found is None and wanted in AUTO_MODELS:
        found = dict(by_id[AUTO_MODEL], id=wanted)
    if found is None and named is not None and named in state.hub_models():
        found = dict(by_id[named], id=wanted)
    if found is None:
        raise ApiError(
            404,
            f"The model '{printable(wanted)}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    return web.json_response(found)


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    hub = state.hub
    hub_status = "not_configured" if hub is None else ("connected" if hub.connected else "disconnected")
    body = {
        "status": "ok",
        "model": state.local_model,
        "hub": hub_status,
        "uptime_s": round(time.time() - state.started_at, 3),
        "admission": state.pipeline.admission.snapshot(),
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
    recorder.feedback(body.response_id, rating, tenant=ctx.tenant_hash, user=ctx.user_hash(body.user))
    return web.json_response({"object": "feedback", "response_id": body.response_id, "rating": rating})
