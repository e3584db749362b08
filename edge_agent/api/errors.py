"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}`` with a fitting status."""

from __future__ import annotations

import json
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
    """Raised by handlers; the middleware turns it into the OpenAI error response."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, param=self.param, code=self.code)

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status)


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


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise ApiError(400, "The request body is empty; expected a JSON object.")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(
            400,
            f"We could not parse the JSON body of your request: {exc}. "
            "(Make sure the body is valid JSON and the Content-Type is application/json.)",
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    return data
