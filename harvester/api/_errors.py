"""Turn one HTTP answer into data or into a typed error from the tree.

Kept free of I/O so every status / code / body combination is unit-testable. Messages are built
from the API's error code and message only, after redaction, never from request headers or
bodies (which hold the token and the client secret).
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from harvester._exceptions import (
    ApiError,
    AuthError,
    BadAnswer,
    InvalidRequest,
    QuotaExhausted,
    RateLimited,
    RequestTimeout,
    SearchIdInvalid,
    ServerError,
    TaskExpired,
    TaskNotCompleted,
    TaskNotFound,
    TokenRejected,
    TooManyRunningTasks,
)
from harvester.api._records import clean

__all__ = [
    "decode_answer",
    "decode_token",
    "may_hold_control",
    "parse_retry_after",
]

_SEARCH_ID = re.compile(r"search[ _]?id\b.*\b(invalid|expired)|invalid count or cursor", re.I)
_DAILY_QUOTA = re.compile(r"quota|daily|per day", re.I)
#: The public API's code for a spent day (its error-code reference), and the one the RQS binding
#: documents; a 429 without either is read from its message (a spent day names the quota).
DAILY_QUOTA_CODES = frozenset({"daily_quota_limit_exceeded", "daily_quota_exceeded"})

Redact = Callable[[str], str]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError:
        return None


def _describe_body(raw: bytes) -> str:
    if not raw.strip():
        return "empty body"
    head = raw.lstrip()[:15].lower()
    if head.startswith((b"<!doctype", b"<html", b"<")):
        return "HTML body"
    return "body that is not JSON (truncated?)"


def _error_fields(body: Any) -> tuple[str | None, str, str | None]:
    """(code, message, log_id) from either the research shape or the OAuth shape."""
    if not isinstance(body, dict):
        return None, "", None
    err = body.get("error")
    if isinstance(err, dict):
        code = err.get("code")
        return (
            str(code) if code is not None else None,
            str(err.get("message") or ""),
            str(err["log_id"]) if err.get("log_id") else None,
        )
    if isinstance(err, str):  # OAuth: {"error": "invalid_client", "error_description": ...}
        log_id = body.get("log_id")
        return err, str(body.get("error_description") or ""), str(log_id) if log_id else None
    return None, "", None


def _classify(
    status: int,
    code: str | None,
    message: str,
    log_id: str | None,
    headers: Mapping[str, str],
    redact: Redact,
) -> ApiError:
    text = redact(message) or (code or f"HTTP {status}")
    said = message.lower().replace("_", " ")
    kw: dict[str, Any] = {"status": status, "code": code, "log_id": log_id}
    daily = code in DAILY_QUOTA_CODES
    if status == 429 or daily or code == "rate_limit_exceeded":
        if code == "too_many_running_tasks" or (not daily and "running task" in said):
            return TooManyRunningTasks(text, **kw)
        if daily or _DAILY_QUOTA.search(said):
            return QuotaExhausted(text, **kw)
        retry_after = parse_retry_after(headers.get("Retry-After"))
        return RateLimited(text, retry_after=retry_after, **kw)
    if code == "too_many_running_tasks":
        return TooManyRunningTasks(text, **kw)
    if status >= 500 or code == "internal_error":
        return ServerError(text, **kw)
    if code == "access_token_invalid":
        return TokenRejected(text, **kw)
    if status in (401, 403) or code in {"scope_not_authorized", "invalid_client"}:
        return AuthError(text, **kw)
    if code == "task_not_found":
        return TaskNotFound(text, **kw)
    if code == "task_expired":
        return TaskExpired(text, **kw)
    if code == "task_not_completed" or status == 409:
        return TaskNotCompleted(text, **kw)
    if _SEARCH_ID.search(message):
        return SearchIdInvalid(text, **kw)
    if status == 408:
        return RequestTimeout(text, **kw)
    return InvalidRequest(text, **kw)


def _body_error(status: int, raw: bytes, headers: Mapping[str, str]) -> ApiError:
    """An answer whose body is unusable: the status decides, the body only describes."""
    what = _describe_body(raw)
    if status == 429:
        return RateLimited(
            f"rate limited ({what})",
            status=status,
            retry_after=parse_retry_after(headers.get("Retry-After")),
        )
    if status >= 500:
        return ServerError(f"server error ({what})", status=status)
    if status == 404:
        return InvalidRequest(f"no such endpoint ({what}): check the base URL", status=status)
    if status == 401:
        return AuthError(f"unauthorized ({what})", status=status)
    return BadAnswer(f"unusable answer: {what}", status=status)


#: JSON can carry a control character only escaped (`\u0001`, `\b`, `\f`, `\r`) or, for DEL,
#: raw: a body without any of these (nearly every body) holds no string that needs cleaning.
_CONTROL_ESCAPE = re.compile(rb"\\(?:u00[01]|u007[fF])").search


def may_hold_control(raw: bytes) -> bool:
    # Substring tests run at memchr speed; the regex only confirms a rare `\u00` hit.
    return (
        (b"\\u00" in raw and _CONTROL_ESCAPE(raw) is not None)
        or b"\\r" in raw
        or b"\\b" in raw
        or b"\\f" in raw
        or b"\x7f" in raw
    )


def _cleaned(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with control characters removed; in a list (a page of records) only the items
    that hold one are walked, which is one username in a thousand on a page of ten thousand."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, list):
            out[key] = [clean(v) if _item_may_hold_control(v) else v for v in value]
        else:
            out[key] = clean(value)
    return out


def _item_may_hold_control(value: Any) -> bool:
    try:
        return may_hold_control(orjson.dumps(value))
    except orjson.JSONEncodeError:
        return True


def _object(status: int, headers: Mapping[str, str], raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or the error a body of any other shape stands for."""
    body = _loads(raw)
    if not isinstance(body, dict):
        raise _body_error(status, raw, headers)
    return body


def decode_answer(
    status: int, headers: Mapping[str, str], raw: bytes, redact: Redact
) -> dict[str, Any]:
    """`data` of a research answer, or raise the error it stands for (TokenRejected for 401)."""
    body = _object(status, headers, raw)
    code, message, log_id = _error_fields(body)
    if status == 200 and code in (None, "ok"):
        data = body.get("data")
        if isinstance(data, dict):
            return _cleaned(data) if may_hold_control(raw) else data
        raise BadAnswer("answer without a data object", status=status)
    raise _classify(status, code, message, log_id, headers, redact)


def decode_token(
    status: int, headers: Mapping[str, str], raw: bytes, redact: Redact
) -> tuple[str, float]:
    """(access_token, expires_in) from the OAuth endpoint's answer."""
    body = _object(status, headers, raw)
    token = body.get("access_token")
    if status == 200 and isinstance(token, str) and token:
        expires_in = body.get("expires_in")
        return token, float(expires_in) if isinstance(expires_in, int | float) else 7200.0
    code, message, log_id = _error_fields(body)
    if status == 200 or (400 <= status < 500 and status not in (408, 429)):
        # A refused token request is the credentials' fault, whatever the code.
        text = redact(message) or code or "token request refused"
        raise AuthError(text, status=status, code=code, log_id=log_id)
    err = _classify(status, code, message, log_id, headers, redact)
    if isinstance(err, TokenRejected):
        err = AuthError("token request refused", status=status, code=code, log_id=log_id)
    raise err
