"""Images and video over HTTP: OpenAI's images API and a video job API of the same shape.

- ``POST /v1/images/generations``: OpenAI's ``CreateImageRequest`` (``prompt``, ``n`` ≤ 10,
  ``size`` ``WIDTHxHEIGHT`` in multiples of 16 from 16 to 2048 or ``auto`` (512x512),
  ``response_format`` ``url`` (default) or ``b64_json``, ``model``, ``user``; ``output_format``
  ``png`` only), answered with an ``ImagesResponse``. ``url`` points at the next route.
- ``GET /v1/images/assets/{asset_id}``: the PNG, for the tenant whose key asks, and nobody else.
- ``POST /v1/videos/generations``: a video job (OpenAI's video object: ``id``, ``status``
  ``queued``…), answered at once; ``frames`` is 4k + 1 (default 9), ``size`` as for images.
- ``GET /v1/videos/generations/{video_id}``: the job, polled (``in_progress``, ``completed``,
  ``failed``); ``GET …/{video_id}/content``: the video as one animated PNG (``image/apng``,
  lossless, written by Pillow without ffmpeg; browsers play it).

Both request bodies also take ``reuse`` (``exact_ok`` | ``variation`` (default) | ``fresh``),
``seed``, ``steps`` and ``negative_prompt``. Every answer carries the route in
``x-edgeroute-route`` (``asset_reuse`` whenever anything was reused, ``hub_oss`` for a fresh
generation on the hub) and the reuse trace in the body's ``edgeroute`` field. Unknown fields are
refused by name, as for text.

Generation on the hub is refused as text is, with ``Retry-After``: a 429 ``overloaded`` when the
media gate is full (image requests on the hub and video jobs still running), a 429
``budget_exceeded`` when the tenant's budget cannot cover the job's maximum cost.
"""

from __future__ import annotations

import base64
import re
import time
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from edge_agent.admission import Overloaded
from edge_agent.api.errors import ApiError, from_validation, parse_json_object
from edge_agent.api.state import CONTEXT
from edge_agent.budgets import BudgetExceeded
from edge_agent.hub_link.errors import HubRefused
from edge_agent.images.gateway import (
    ImageGateway,
    MediaAsk,
    MediaNotFound,
    MediaNotReady,
    MediaUnavailable,
)
from edge_agent.images.store import VideoJob
from shared.images import ImageRequest, ImageRequestError, VideoRequest, validate_image_request
from shared.taxonomy import HUB_CHOICE_MODELS, named_hub_model

IMAGES = web.AppKey("edge_images", ImageGateway)
ROUTE_HEADER = "x-edgeroute-route"
DEFAULT_SIDE = 512
_SIZE = re.compile(r"^([0-9]{1,5})x([0-9]{1,5})$")


class _MediaBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=32_000)
    model: str | None = None
    size: str | None = None
    user: str | None = Field(default=None, max_length=256)
    # edgeroute's extensions
    reuse: Literal["exact_ok", "variation", "fresh"] | None = None
    seed: StrictInt | None = Field(default=None, ge=0, lt=2**31)
    steps: StrictInt | None = Field(default=None, ge=1, le=1000)
    negative_prompt: str | None = Field(default=None, max_length=32_000)


BodyT = TypeVar("BodyT", bound=_MediaBody)


class ImageGenerationBody(_MediaBody):
    n: StrictInt | None = Field(default=None, ge=1, le=10)
    response_format: Literal["url", "b64_json"] | None = None
    output_format: Literal["png"] | None = None
    stream: Literal[False] | None = None


class VideoGenerationBody(_MediaBody):
    frames: StrictInt | None = Field(default=None, ge=1, le=257)


def _gateway(request: web.Request) -> ImageGateway:
    return request.app[IMAGES]


async def _parse(request: web.Request, schema: type[BodyT]) -> BodyT:
    try:
        return schema.model_validate(parse_json_object(await request.read()))
    except ValidationError as exc:
        raise from_validation(exc) from None


def _size(size: str | None) -> tuple[int, int]:
    if size is None or size == "auto":
        return DEFAULT_SIDE, DEFAULT_SIDE
    m = _SIZE.match(size)
    if m is None:
        raise ApiError(
            400,
            f"Invalid value for 'size': {size!r}; expected 'auto' or WIDTHxHEIGHT such as '512x512'.",
            param="size",
            code="invalid_value",
        )
    return int(m[1]), int(m[2])


def _hub_model(model: str | None) -> str:
    """The hub model a client named: "" (the hub's default) for the router's own ids."""
    if model is None or model in HUB_CHOICE_MODELS:
        return ""
    return named_hub_model(model) or model


def _ask(body: _MediaBody, n: int = 1, frames: int = 1) -> MediaAsk:
    width, height = _size(body.size)
    ask = MediaAsk(
        prompt=body.prompt,
        width=width,
        height=height,
        n=n,
        frames=frames,
        steps=body.steps or 0,
        seed=body.seed,
        negative_prompt=body.negative_prompt or "",
        reuse=body.reuse or "variation",
        model=_hub_model(body.model),
        request_model=body.model or "",
        user=body.user or "",
    )
    shape: ImageRequest | VideoRequest = (
        ImageRequest(ask.prompt, "", "", n=n, width=width, height=height, steps=ask.steps, reuse=ask.reuse)
        if frames == 1 and isinstance(body, ImageGenerationBody)
        else VideoRequest(
            ask.prompt, "", "", frames=frames, width=width, height=height, steps=ask.steps, reuse=ask.reuse
        )
    )
    try:  # the hub's own rules, so a request it would refuse never leaves the edge
        validate_image_request(shape)
    except ImageRequestError as exc:
        raise ApiError(
            400, f"Invalid value for '{exc.param}': {exc}", param=exc.param, code="invalid_value"
        ) from None
    return ask


def _failure(exc: Exception) -> ApiError:
    if isinstance(exc, Overloaded):
        retry = {"Retry-After": str(exc.retry_after_s)}
        return ApiError(exc.status, exc.message, code="overloaded", headers=retry)
    if isinstance(exc, BudgetExceeded):
        retry = {"Retry-After": str(exc.retry_after_s)}
        return ApiError(429, exc.message, code="budget_exceeded", headers=retry)
    if isinstance(exc, MediaUnavailable):
        retry = {"Retry-After": str(exc.retry_after_s)}
        return ApiError(503, str(exc), code="hub_unavailable", headers=retry)
    if isinstance(exc, HubRefused):
        if exc.code == "unknown_model":
            return ApiError(
                404, f"The model does not exist here: {exc.message}", param="model", code="model_not_found"
            )
        return ApiError(400, f"The hub refused this request: {exc.message}", code="invalid_request")
    if isinstance(exc, MediaNotReady):
        return ApiError(400, str(exc), code="video_not_ready")
    return ApiError(404, str(exc), code="not_found")


# --- images ---------------------------------------------------------------------------------


async def image_generations(request: web.Request) -> web.Response:
    body = await _parse(request, ImageGenerationBody)
    ask = _ask(body, n=body.n or 1)
    try:
        answer = await _gateway(request).images(request[CONTEXT], ask)
    except (MediaUnavailable, HubRefused, Overloaded, BudgetExceeded) as exc:
        raise _failure(exc) from None
    base = str(request.url.origin())
    data: list[dict[str, str]] = []
    for item in answer.items:
        if body.response_format == "b64_json":
            data.append({"b64_json": base64.b64encode(item.data).decode("ascii")})
        else:
            data.append({"url": f"{base}/v1/images/assets/{item.asset_id}"})
    payload = {
        "created": int(time.time()),
        "data": data,
        "output_format": "png",
        "edgeroute": answer.edgeroute_field(),
    }
    return web.json_response(payload, headers={ROUTE_HEADER: answer.route.value})


async def image_asset(request: web.Request) -> web.Response:
    try:
        asset = _gateway(request).asset(request[CONTEXT], request.match_info["asset_id"])
    except MediaNotFound as exc:
        raise _failure(exc) from None
    return _content(asset.data, asset.content_type, asset.sha256)


def _content(data: bytes, content_type: str, sha256: str) -> web.Response:
    headers = {"Cache-Control": "private, max-age=3600", "ETag": f'"{sha256}"'}
    return web.Response(body=data, content_type=content_type, headers=headers)


# --- video ----------------------------------------------------------------------------------


def video_object(job: VideoJob) -> dict[str, Any]:
    """OpenAI's video object, with ``frames`` for ``seconds`` and the reuse trace once done."""
    done = job.status in ("completed", "failed")
    error = {"code": job.error_code, "message": job.error} if job.status == "failed" else None
    return {
        "id": job.id,
        "object": "video",
        "model": job.model,
        "status": job.status,
        "progress": 100 if done else 0,
        "created_at": int(job.created),
        "completed_at": int(job.completed) if job.completed is not None else None,
        "expires_at": None,
        "prompt": job.prompt,
        "size": f"{job.width}x{job.height}",
        "frames": job.frames,
        "remixed_from_video_id": None,
        "error": error,
        "edgeroute": job.edgeroute,
    }


def _video_response(job: VideoJob) -> web.Response:
    headers = {ROUTE_HEADER: str(job.edgeroute["route"])} if job.edgeroute else {}
    return web.json_response(video_object(job), headers=headers)


async def video_generations(request: web.Request) -> web.Response:
    body = await _parse(request, VideoGenerationBody)
    frames = body.frames or 9
    if frames % 4 != 1:
        raise ApiError(
            400,
            f"Invalid value for 'frames': {frames}; video models here take 4k + 1 frames (5, 9, …, 81).",
            param="frames",
            code="invalid_value",
        )
    ask = _ask(body, frames=frames)
    try:
        job = await _gateway(request).submit_video(request[CONTEXT], ask)
    except (MediaUnavailable, HubRefused, Overloaded, BudgetExceeded) as exc:
        raise _failure(exc) from None
    return _video_response(job)


async def video_status(request: web.Request) -> web.Response:
    try:
        job = await _gateway(request).video(request[CONTEXT], request.match_info["video_id"])
    except (MediaUnavailable, MediaNotFound) as exc:
        raise _failure(exc) from None
    return _video_response(job)


async def video_content(request: web.Request) -> web.Response:
    try:
        asset = _gateway(request).video_content(request[CONTEXT], request.match_info["video_id"])
    except (MediaNotFound, MediaNotReady) as exc:
        raise _failure(exc) from None
    return _content(asset.data, asset.content_type, asset.sha256)


def add_routes(app: web.Application, gateway: ImageGateway) -> None:
    app[IMAGES] = gateway
    app.router.add_post("/v1/images/generations", image_generations)
    app.router.add_get("/v1/images/assets/{asset_id}", image_asset)
    app.router.add_post("/v1/videos/generations", video_generations)
    app.router.add_get("/v1/videos/generations/{video_id}", video_status)
    app.router.add_get("/v1/videos/generations/{video_id}/content", video_content)
