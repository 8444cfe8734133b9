"""Classification of single answers, without I/O."""

from __future__ import annotations

import orjson
import pytest

from harvester._exceptions import (
    ApiError,
    AuthError,
    BadAnswer,
    InvalidRequest,
    QuotaExhausted,
    RateLimited,
    SearchIdInvalid,
    ServerError,
    TaskExpired,
    TaskNotCompleted,
    TaskNotFound,
    TokenRejected,
    TooManyRunningTasks,
)
from harvester.api._errors import decode_answer, decode_token, parse_retry_after


def body(code: str, message: str = "") -> bytes:
    return f'{{"data": {{}}, "error": {{"code": "{code}", "message": "{message}"}}}}'.encode()


def same(s: str) -> str:
    return s


@pytest.mark.parametrize(
    ("status", "raw", "cls", "kind"),
    [
        (400, body("invalid_params", "Search Id 7 is invalid or expired"), SearchIdInvalid, None),
        (400, body("invalid_params", "Invalid count or cursor"), SearchIdInvalid, None),
        (400, body("invalid_params", "bad field"), InvalidRequest, None),
        (401, body("scope_not_authorized"), AuthError, None),
        (404, body("task_not_found"), TaskNotFound, None),
        (404, body("task_expired"), TaskExpired, None),
        (409, body("task_not_completed"), TaskNotCompleted, None),
        (429, body("rate_limit_exceeded", "daily quota exceeded"), QuotaExhausted, None),
        (429, body("daily_quota_exceeded"), QuotaExhausted, None),
        # The public API's code decides even when the message says nothing of a quota.
        (429, body("daily_quota_limit_exceeded", "limit reached"), QuotaExhausted, None),
        (429, body("daily_quota_limit_exceeded", "running tasks"), QuotaExhausted, None),
        (429, body("too_many_running_tasks"), TooManyRunningTasks, None),
        (429, body("rate_limit_exceeded", "slow down"), RateLimited, "rate_limited"),
        (429, b"<html>Too Many</html>", RateLimited, "rate_limited"),
        (500, body("internal_error", "Server Internal Error"), ServerError, "5xx"),
        (500, b"Something went wrong", ServerError, "5xx"),
        (504, b"<html>504</html>", ServerError, "5xx"),
        (200, b"", BadAnswer, "bad_body"),
        (200, b'{"data": {"vid', BadAnswer, "bad_body"),
        (200, b'{"error": {"code": "ok"}}', BadAnswer, "bad_body"),
        (404, b"<html>Not Found</html>", InvalidRequest, None),
    ],
)
def test_answers_map_onto_the_error_tree(
    status: int, raw: bytes, cls: type[ApiError], kind: str | None
) -> None:
    with pytest.raises(cls) as info:
        decode_answer(status, {}, raw, same)
    assert type(info.value) is cls
    if kind:
        assert info.value.kind == kind


def test_an_expired_token_is_the_session_s_to_refresh() -> None:
    with pytest.raises(TokenRejected) as info:
        decode_answer(401, {}, body("access_token_invalid"), same)
    assert (info.value.status, info.value.code) == (401, "access_token_invalid")


def test_ok_answers_give_their_data() -> None:
    raw = b'{"data": {"videos": [{"id": 7345678901234567890}]}, "error": {"code": "ok"}}'
    assert decode_answer(200, {}, raw, same) == {"videos": [{"id": 7345678901234567890}]}


def test_rate_limited_carries_retry_after() -> None:
    with pytest.raises(RateLimited) as info:
        decode_answer(429, {"Retry-After": "7"}, body("rate_limit_exceeded"), same)
    assert info.value.retry_after == 7.0


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0


def test_token_answers() -> None:
    ok = b'{"access_token": "clt.x", "expires_in": 60, "token_type": "Bearer"}'
    assert decode_token(200, {}, ok, same) == ("clt.x", 60.0)
    bad = b'{"error": "invalid_client", "error_description": "nope", "log_id": "1"}'
    with pytest.raises(AuthError):
        decode_token(401, {}, bad, same)
    with pytest.raises(ServerError):
        decode_token(503, {}, b"", same)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ab\x00c", "abc"),
        ("x\x7fy", "xy"),
        ("a\rb\x1f", "ab"),
        ("tab\tand\nnewline", "tab\tand\nnewline"),
        ("C:\\boot \\u0001", "C:\\boot \\u0001"),  # escaped backslashes: nothing to remove
        ("plain", "plain"),
    ],
)
def test_answers_are_cleaned_only_when_the_body_can_hold_control_characters(
    text: str, expected: str
) -> None:
    raw = orjson.dumps({"data": {"videos": [{"username": text, "tags": [text]}]}})
    data = decode_answer(200, {}, raw, lambda t: t)
    assert data == {"videos": [{"username": expected, "tags": [expected]}]}
