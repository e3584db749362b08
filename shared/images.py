"""Typed structs for image and video generation requests, their results and their reuse trace.

They are msgspec structs so that the edge ↔ hub link can carry them like the text messages in
``shared.wire``: plain fields, PNG bytes, no pickled tensors. ``tenant`` and ``user`` are set by
whoever authenticated the caller (the edge from its API key, the hub from the link identity),
never copied from a client body: asset reuse is scoped by them exactly as the text cache is.

``reuse`` is the caller's preference, cheapest first:

- ``exact_ok``: a cached asset may be returned as it is (never one this user already received);
- ``variation`` (default): reuse work, but every returned asset differs from its source and
  from this user's earlier returns by at least the calibrated variation distance;
- ``fresh``: no reuse at all (the result is still harvested for later requests).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from shared.wire import TraceStep

ReuseMode = Literal["exact_ok", "variation", "fresh"]
ReuseKind = Literal["exact", "variation", "recomposition", "fresh"]
ImageRoute = Literal["asset_reuse", "fresh"]

REUSE_MODES: tuple[ReuseMode, ...] = ("exact_ok", "variation", "fresh")
MAX_IMAGES = 10  # the OpenAI images API's own limit on ``n``
MAX_SIDE = 2048
MIN_SIDE = 16
MAX_STEPS = 1000
MAX_FRAMES = 257


class ImageRequestError(ValueError):
    """A request the hub refuses before any work: the edge maps it to a 400 OpenAI error body."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


class ImageRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    prompt: str
    tenant: str
    user: str
    n: int = 1
    width: int = 512
    height: int = 512
    steps: int = 0  # 0: the backend's default
    guidance_scale: float = 7.5
    seed: int | None = None  # seeds image i with seed + i; None draws one
    negative_prompt: str = ""
    reuse: ReuseMode = "variation"
    model: str = ""  # a configured backend name; "" is the hub's default


class VideoRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    prompt: str
    tenant: str
    user: str
    frames: int = 9  # Wan-style models want 4k + 1 frames
    width: int = 512
    height: int = 512
    steps: int = 0
    guidance_scale: float = 5.0
    seed: int | None = None
    negative_prompt: str = ""
    reuse: ReuseMode = "variation"
    model: str = ""


class ReuseTrace(msgspec.Struct, frozen=True, omit_defaults=True):
    """What one returned asset cost and what it was made from."""

    route: ImageRoute
    kind: ReuseKind
    steps_total: int  # what a fresh generation of this request runs
    steps_run: int  # denoising steps actually run (0 for an exact reuse)
    source_asset_id: str = ""
    similarity: float = 0.0  # prompt cosine to the source's prompt
    # to the closest of: the source, this user's earlier returns (None: nothing to compare with)
    distance: float | None = None
    threshold: float = 0.0  # the variation distance it had to exceed
    escalations: int = 0  # attempts that fell short of the threshold and ran again stronger
    wall_s: float = 0.0

    @property
    def steps_skipped(self) -> int:
        return self.steps_total - self.steps_run


class GeneratedImage(msgspec.Struct, frozen=True):
    asset_id: str
    png: bytes
    width: int
    height: int
    seed: int
    trace: ReuseTrace


class ImageResult(msgspec.Struct, frozen=True):
    images: list[GeneratedImage]
    model: str

    @property
    def route(self) -> ImageRoute:
        """``asset_reuse`` as soon as any returned image reused anything."""
        reused = any(img.trace.route == "asset_reuse" for img in self.images)
        return "asset_reuse" if reused else "fresh"


class GeneratedVideo(msgspec.Struct, frozen=True):
    asset_id: str
    frames_png: list[bytes]
    width: int
    height: int
    seed: int
    trace: ReuseTrace


class VideoResult(msgspec.Struct, frozen=True):
    video: GeneratedVideo
    model: str


def validate_image_request(req: ImageRequest | VideoRequest) -> None:
    """Raise ``ImageRequestError`` naming the offending field (the OpenAI error's ``param``)."""
    if not req.prompt.strip():
        raise ImageRequestError("prompt must not be empty", "prompt")
    if isinstance(req, ImageRequest) and not 1 <= req.n <= MAX_IMAGES:
        raise ImageRequestError(f"n must be between 1 and {MAX_IMAGES}", "n")
    if isinstance(req, VideoRequest) and not 1 <= req.frames <= MAX_FRAMES:
        raise ImageRequestError(f"frames must be between 1 and {MAX_FRAMES}", "frames")
    for name, side in (("width", req.width), ("height", req.height)):
        # latents are 1/8 of the image and a UNet halves them again: multiples of 16 always fit
        if not MIN_SIDE <= side <= MAX_SIDE or side % 16:
            raise ImageRequestError(
                f"{name} must be a multiple of 16 between {MIN_SIDE} and {MAX_SIDE}", "size"
            )
    if not 0 <= req.steps <= MAX_STEPS:
        raise ImageRequestError(f"steps must be between 0 and {MAX_STEPS}", "steps")
    if req.reuse not in REUSE_MODES:
        raise ImageRequestError(f"reuse must be one of {', '.join(REUSE_MODES)}", "reuse")


def trace_step(trace: ReuseTrace) -> TraceStep:
    """The route-trace hop for one returned asset, in the text path's trace format."""
    detail: dict[str, str | int | float | bool | None] = {
        "kind": trace.kind,
        "steps_total": trace.steps_total,
        "steps_run": trace.steps_run,
        "steps_skipped": trace.steps_skipped,
    }
    if trace.route == "asset_reuse":
        detail |= {
            "source_asset_id": trace.source_asset_id,
            "similarity": round(trace.similarity, 4),
            "threshold": round(trace.threshold, 4),
        }
    if trace.distance is not None:
        detail["distance"] = round(trace.distance, 4)
    return TraceStep(
        stage="asset_reuse",
        decision="hit" if trace.route == "asset_reuse" else "miss",
        reason=trace.kind,
        elapsed_ms=round(trace.wall_s * 1000.0, 2),
        detail=detail,
    )
