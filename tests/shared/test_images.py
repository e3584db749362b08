from __future__ import annotations

import msgspec
import pytest

from shared.images import (
    GeneratedImage,
    ImageRequest,
    ImageRequestError,
    ImageResult,
    ReuseTrace,
    VideoRequest,
    trace_step,
    validate_image_request,
)


def test_requests_and_results_round_trip_over_msgpack() -> None:
    req = ImageRequest("a cat", "t", "u", n=2, width=256, height=512, reuse="exact_ok")
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(req), type=ImageRequest) == req
    trace = ReuseTrace(
        "asset_reuse",
        "variation",
        steps_total=30,
        steps_run=18,
        source_asset_id="a1",
        similarity=0.93,
        distance=0.05,
        threshold=0.03,
    )
    result = ImageResult([GeneratedImage("b2", b"\x89PNG", 256, 512, 7, trace)], model="m")
    back = msgspec.msgpack.decode(msgspec.msgpack.encode(result), type=ImageResult)
    assert back == result and back.route == "asset_reuse" and back.images[0].trace.steps_skipped == 12
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(
            msgspec.msgpack.encode({**msgspec.to_builtins(req), "reuse": "always"}), type=ImageRequest
        )


@pytest.mark.parametrize(
    ("req", "param"),
    [
        (ImageRequest("a cat", "t", "u", n=0), "n"),
        (ImageRequest("a cat", "t", "u", n=11), "n"),
        (ImageRequest("a cat", "t", "u", width=500), "size"),
        (ImageRequest("a cat", "t", "u", height=8), "size"),
        (ImageRequest("", "t", "u"), "prompt"),
        (ImageRequest("a cat", "t", "u", steps=5000), "steps"),
        (VideoRequest("a cat", "t", "u", frames=0), "frames"),
    ],
)
def test_validation_names_the_offending_field(req: ImageRequest | VideoRequest, param: str) -> None:
    with pytest.raises(ImageRequestError) as err:
        validate_image_request(req)
    assert err.value.param == param


def test_a_fresh_trace_step_carries_no_source() -> None:
    step = trace_step(ReuseTrace("fresh", "fresh", steps_total=20, steps_run=20))
    assert step.decision == "miss" and "source_asset_id" not in step.detail and "distance" not in step.detail
    validate_image_request(ImageRequest("a cat", "t", "u"))  # the defaults are valid
