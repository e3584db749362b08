"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}`` with a fitting status."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from pydantic import ValidationError

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable",
}


def error_body(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": _TYPES.get(status, "api_error"), "param": param, "code": code}
    }


def error_response(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> web.Response:
    return web.json_response(error_body(status, message, param=param, code=code), status=status)


class ApiError(Exception):
    """Raised by handlers; the middleware turns it into the OpenAI error response.

    ``headers`` travel with it (``Retry-After`` on a 429 or 503). A 5xx's ``message`` is logged,
    not sent: the middleware answers with a generic text that names the request id.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, param=self.param, code=self.code)

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status, headers=self.headers)


def from_validation(exc: ValidationError) -> ApiError:
    """First pydantic error as a 400 naming the offending field (``messages.0.role``)."""
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return ApiError(400, "invalid request body")
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"] if not _is_union_tag(p))
    kind = first["type"]
    if kind == "missing":
        message = f"'{loc}' is a required property"
    elif kind == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {loc}"
    else:
        message = f"Invalid value for '{loc}': {first['msg']}"
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return ApiError(
        400, message + more, param=loc or None, code="invalid_value" if kind != "missing" else None
    )


def _is_union_tag(part: object) -> bool:
    # pydantic adds the union member it tried ("str", "list[...]") to the location; clients want the field
    return isinstance(part, str) and (part in {"str", "int", "float", "bool"} or "[" in part)


# legitimate bodies nest a few levels (a JSON schema in response_format a few dozen); deeper is abuse
MAX_JSON_DEPTH = 64
# a \u escape of a UTF-16 surrogate (D800-DFFF): the only way an ASCII body can hold one
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_json_object(raw: bytes, first: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The body as a JSON object of Unicode text, or a 400 saying why not. ``first`` runs on the
    parsed object before the walk over every string below (a cheap limit, such as the message
    count, refuses a huge body in the time it takes to parse, not to walk: 20 ms, not 100+).

    Refused besides malformed JSON: nesting deeper than ``MAX_JSON_DEPTH`` (the standard decoder
    recurses, so a deep enough body would exhaust the stack), the non-standard literals ``NaN``
    and ``Infinity``, and strings holding an unpaired UTF-16 surrogate escape (``"\\ud800"``),
    which no model can tokenize.
    """
    if not raw.strip():
        raise ApiError(400, "The request body is empty; expected a JSON object.")
    encoding = json.detect_encoding(raw)
    try:
        data = _DECODER.decode(raw.decode(encoding, "surrogatepass"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(
            400,
            f"We could not parse the JSON body of your request: {exc}. "
            "(Make sure the body is valid JSON and the Content-Type is application/json.)",
            code="invalid_json",
        ) from None
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:  # from _no_constant
        raise ApiError(400, str(exc), code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    if first is not None:
        first(data)
    if _may_be_deep_or_hold_surrogates(raw, encoding):
        _check_text(data)
    return data


def _may_be_deep_or_hold_surrogates(raw: bytes, encoding: str) -> bool:
    """False when a scan of the bytes (in C) rules out what ``_check_text`` walks the object for:
    fewer brackets than the depth limit, and no surrogate either escaped or as raw UTF-8 bytes
    (the decoder lets those through). Conservative: an escaped backslash before ``ud800``, or
    Hangul's lead byte, only costs the walk. Most bodies skip it; it was a third of parsing one."""
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH:
        return True
    if raw.isascii() and b"\x00" not in raw:  # no BOM, no UTF-16/32: read as UTF-8, escapes only
        return b"\\u" in raw and _SURROGATE_ESCAPE.search(raw) is not None
    return encoding != "utf-8" or b"\xed" in raw or _SURROGATE_ESCAPE.search(raw) is not None


def _no_constant(name: str) -> Any:
    raise ValueError(f"We could not parse the JSON body of your request: {name} is not a JSON number.")


# what ``json.loads(raw, parse_constant=...)`` does, without building a decoder for every body
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _too_deep() -> ApiError:
    return ApiError(
        400, f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep.", code="invalid_json"
    )


def _check_text(data: dict[str, Any]) -> None:
    """Depth and Unicode checks, iteratively: the decoder copes with depths a recursive walk would not."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_JSON_DEPTH:
            raise _too_deep()
        if isinstance(value, str):
            if not is_unicode_text(value):
                raise _surrogate(path)
        elif isinstance(value, dict):
            for key, item in value.items():
                if not is_unicode_text(key):
                    raise _surrogate(path)
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, i)) for i, item in enumerate(value))


def printable(value: str) -> str:
    """``value`` safe to quote in a message: lone surrogates (from undecodable bytes) spelled out."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def is_unicode_text(value: str) -> bool:
    """Whether ``value`` can be encoded as UTF-8 (false for one holding lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _surrogate(path: tuple[str | int, ...]) -> ApiError:
    where = ".".join(str(p) for p in path) or None
    return ApiError(
        400,
        f"Invalid value for '{where}': the string holds an unpaired UTF-16 surrogate escape, "
        "which is not Unicode text.",
        param=where,
        code="invalid_value",
    )
