"""Answer shapes shared by both protocols: the `{"data", "error"}` envelope and OAuth errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import orjson
from aiohttp import web

__all__ = [
    "BadBody",
    "Invalid",
    "body_int",
    "error",
    "html",
    "json_response",
    "oauth_error",
    "ok",
    "read_json",
]


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def ok(data: Mapping[str, Any], log_id: str) -> web.Response:
    return json_response({"data": data, "error": {"code": "ok", "message": "", "log_id": log_id}})


def error(
    status: int,
    code: str,
    message: str,
    log_id: str,
    *,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = {"data": {}, "error": {"code": code, "message": message, "log_id": log_id}}
    return json_response(body, status, headers)


def oauth_error(status: int, code: str, description: str, log_id: str) -> web.Response:
    body = {"error": code, "error_description": description, "log_id": log_id}
    return json_response(body, status)


def html(status: int, title: str) -> web.Response:
    page = f"<html><head><title>{status} {title}</title></head><body><h1>{title}</h1></body></html>"
    return web.Response(text=page, status=status, content_type="text/html")


class BadBody(Exception):
    """The request body is not a JSON object."""


async def read_json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise BadBody("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadBody("request body must be a JSON object")
    return body


class Invalid(Exception):
    """A 400 invalid_params with this message."""


D = TypeVar("D", int, None)


def body_int(body: dict[str, Any], key: str, default: D, lo: int, hi: int) -> int | D:
    """`body[key]` as an int in [lo, hi] (digits in a string accepted, as the API does), or
    `default` when absent; the API's own message otherwise."""
    raw = body.get(key)
    if raw is None:
        return default
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or not lo <= raw <= hi:
        raise Invalid("Invalid count or cursor")
    return raw
