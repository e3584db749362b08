"""msgpack codec for the edge ↔ hub link.

Limits are checked before parsing, extension types are refused, and every failure surfaces as a
``DecodeFailure`` carrying a machine-readable code, so a hostile or broken peer can cost the
receiver one error reply and nothing else. No frame can construct arbitrary objects: msgspec
only builds the structs declared in ``shared.wire``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from shared import PROTOCOL_VERSION
from shared.wire import Body, Envelope

DEFAULT_MAX_FRAME = 4 * 1024 * 1024


class DecodeFailure(Exception):
    """A frame that could not become an ``Envelope``.

    ``code`` is one of ``oversized``, ``malformed``, ``invalid``, ``unsupported_version``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _refuse_ext(code: int, data: memoryview) -> Any:
    raise DecodeFailure("malformed", f"msgpack extension type {code} is not allowed")


class Codec:
    """Encoder/decoder pair; one per socket owner (msgspec encoders are not thread-safe)."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(Envelope, ext_hook=_refuse_ext)

    def encode(self, body: Body) -> bytes:
        frame = self._encoder.encode(Envelope(v=PROTOCOL_VERSION, body=body))
        if len(frame) > self.max_frame:
            raise DecodeFailure("oversized", f"frame of {len(frame)} bytes exceeds {self.max_frame}")
        return frame

    def decode(self, frame: bytes | memoryview) -> Body:
        if len(frame) > self.max_frame:
            raise DecodeFailure("oversized", f"frame of {len(frame)} bytes exceeds {self.max_frame}")
        try:
            env = self._decoder.decode(frame)
        except DecodeFailure:
            raise
        except msgspec.ValidationError as exc:
            raise DecodeFailure("invalid", str(exc)) from None
        except msgspec.DecodeError as exc:
            raise DecodeFailure("malformed", str(exc)) from None
        except (ValueError, OverflowError, RecursionError) as exc:
            # msgspec lets a str that is not UTF-8 through as UnicodeDecodeError: still a bad frame
            raise DecodeFailure("malformed", f"{type(exc).__name__}: {exc}") from None
        if env.v != PROTOCOL_VERSION:
            raise DecodeFailure("unsupported_version", f"peer speaks v{env.v}, we speak v{PROTOCOL_VERSION}")
        return env.body
