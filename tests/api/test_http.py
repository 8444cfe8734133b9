"""ApiSession against a scripted loopback API: tokens, retries, classification, hooks, secrets."""

from __future__ import annotations

import anyio
import pytest
import structlog

from harvester._exceptions import (
    AuthError,
    InvalidRequest,
    QuotaExhausted,
    RateLimited,
    TooManyRunningTasks,
    TransientError,
)
from harvester.api import ApiSession, Credentials, RetryPolicy
from tests.api.conftest import FAST, RecordingHooks, SessionFactory
from tests.api.fakeapi import (
    KEY,
    SECRET,
    FakeApi,
    Step,
    cut_short,
    err,
    ok,
    raw,
    reset,
    slow,
)

pytestmark = pytest.mark.anyio
EP = "/v2/research/video/query/"
TOKEN = "/v2/oauth/token/"


async def test_token_is_fetched_once_and_sent_as_bearer(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    fake.defaults[EP] = ok({"videos": []})
    session = make_session()
    for _ in range(3):
        assert await session.post(EP, {}) == {"videos": []}
    assert fake.tokens_issued == 1
    token_call = fake.requests[0]
    assert token_call[0] == TOKEN
    assert b"grant_type=client_credentials" in token_call[2]
    assert all(fake.bearer(i) == f"Bearer clt.tok1-{SECRET[:3]}" for i in (1, 2, 3))


async def test_token_is_renewed_before_it_expires(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    now = [0.0]
    fake.token_ttl = 100
    fake.defaults[EP] = ok({})
    session = make_session(clock=lambda: now[0])
    await session.post(EP, {})
    now[0] = 89.0
    await session.post(EP, {})
    assert fake.tokens_issued == 1
    now[0] = 90.5  # past 90 % of expires_in: renewed without waiting for a 401
    await session.post(EP, {})
    assert fake.tokens_issued == 2
    assert fake.count(EP) == 3


async def test_a_rejected_token_is_refreshed_once_and_the_call_repeated(
    fake: FakeApi, make_session: SessionFactory, hooks: RecordingHooks
) -> None:
    fake.script(EP, err(401, "access_token_invalid", "token expired"), ok({"n": 1}))
    session = make_session()
    assert await session.post(EP, {}, counted=True) == {"n": 1}
    assert fake.tokens_issued == 2
    assert fake.bearer(-1) == f"Bearer clt.tok2-{SECRET[:3]}"
    # Both calls reached the API, so both count against the quota.
    assert hooks.reserved == [EP, EP]
    assert [s[1] for s in hooks.settled] == [False, True]


async def test_concurrent_callers_refresh_the_token_once(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    session = make_session()
    fake.defaults[EP] = ok({})
    await session.post(EP, {})
    fake.token_delay = 0.05
    fake.script(EP, *[err(401, "access_token_invalid") for _ in range(8)])
    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(session.post, EP, {})
    assert fake.tokens_issued == 2


async def test_a_token_rejected_again_after_a_refresh_is_retried_then_transient(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    # A token may expire or be revoked again within moments: not the credentials' fault
    # (those fail at the token endpoint), so it is retried with backoff, then left transient.
    fake.defaults[EP] = err(401, "access_token_invalid")
    with pytest.raises(TransientError) as info:
        await make_session().post(EP, {})
    assert info.value.kind == "token_rejected"
    assert fake.count(EP) == 2 * FAST.attempts


async def test_wrong_credentials_fail_at_once(fake: FakeApi) -> None:
    session = ApiSession(fake.base_url, Credentials(KEY, "wrong"), retry=FAST)
    try:
        with pytest.raises(AuthError) as info:
            await session.post(EP, {})
    finally:
        await session.close()
    assert info.value.code == "invalid_client"
    assert fake.count(TOKEN) == 1


@pytest.mark.parametrize(
    ("step", "kind"),
    [
        (err(500, "internal_error", "Something went wrong. Please try again later."), "5xx"),
        (raw(504, b"<html><body><h1>504 Gateway Time-out</h1></body></html>"), "5xx"),
        (raw(502, b""), "5xx"),
        (raw(200, b'{"data": {"videos": [{"id": 1', "application/json"), "bad_body"),
        (raw(200, b"", "application/json"), "bad_body"),
        (raw(200, b"<!DOCTYPE html><html></html>"), "bad_body"),
        (cut_short(), "bad_body"),
        (reset(), "connection"),
    ],
)
async def test_transient_faults_are_retried(
    fake: FakeApi, make_session: SessionFactory, hooks: RecordingHooks, step: Step, kind: str
) -> None:
    fake.script(EP, step, step)
    fake.defaults[EP] = ok({"fine": True})
    assert await make_session().post(EP, {}, counted=True) == {"fine": True}
    assert hooks.retries == [(kind, 1, 0.5), (kind, 2, 1.0)]
    assert hooks.errors == [kind, kind]
    assert hooks.settled == [(EP, False, 0), (EP, False, 0), (EP, True, 0)]


async def test_a_timeout_is_retried(
    fake: FakeApi, make_session: SessionFactory, hooks: RecordingHooks
) -> None:
    fake.script(EP, slow(0.4, ok({})))
    fake.defaults[EP] = ok({"fine": True})
    assert await make_session(request_timeout=0.1).post(EP, {}) == {"fine": True}
    assert hooks.errors == ["timeout"]


async def test_retry_after_is_honoured(
    fake: FakeApi, make_session: SessionFactory, hooks: RecordingHooks
) -> None:
    fake.script(EP, err(429, "rate_limit_exceeded", "slow down", {"Retry-After": "2"}))
    fake.defaults[EP] = ok({})
    await make_session().post(EP, {})
    assert hooks.retries == [("rate_limited", 1, 2.0)]


async def test_retry_after_is_capped(
    fake: FakeApi, make_session: SessionFactory, hooks: RecordingHooks
) -> None:
    fake.script(EP, err(429, "rate_limit_exceeded", "", {"Retry-After": "86400"}))
    fake.defaults[EP] = ok({})
    policy = RetryPolicy(max_retry_after=30.0, wait_scale=1e-6)
    await make_session(retry=policy).post(EP, {})
    assert hooks.retries == [("rate_limited", 1, 30.0)]


async def test_attempts_are_bounded_then_the_error_is_typed(
    fake: FakeApi, make_session: SessionFactory, hooks: RecordingHooks
) -> None:
    fake.defaults[EP] = raw(503, b"")
    with structlog.testing.capture_logs() as logs, pytest.raises(TransientError) as info:
        await make_session().post(EP, {})
    assert info.value.kind == "5xx"
    assert info.value.status == 503
    assert fake.count(EP) == FAST.attempts
    assert [r[2] for r in hooks.retries] == [0.5, 1.0, 2.0]
    events = [e["event"] for e in logs]
    assert events.count("retry") == 3
    failed = [e for e in logs if e["event"] == "request_failed"]
    assert failed[0]["kind"] == "5xx"
    assert failed[0]["attempts"] == FAST.attempts


async def test_rate_limit_that_persists_ends_as_rate_limited(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    fake.defaults[EP] = err(429, "rate_limit_exceeded", "too many requests")
    with pytest.raises(RateLimited):
        await make_session().post(EP, {})


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("rate_limit_exceeded", "You have exceeded your daily quota"),
        ("daily_quota_exceeded", "records per day spent"),
    ],
)
async def test_daily_quota_is_a_verdict_not_retried(
    fake: FakeApi, make_session: SessionFactory, hooks: RecordingHooks, code: str, message: str
) -> None:
    fake.defaults[EP] = err(429, code, message)
    with pytest.raises(QuotaExhausted):
        await make_session().post(EP, {}, counted=True)
    assert fake.count(EP) == 1
    assert hooks.retries == []
    assert hooks.settled == [(EP, False, 0)]


async def test_too_many_running_tasks_is_left_to_the_task_client(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    fake.defaults[EP] = err(429, "too_many_running_tasks", "5 tasks running")
    with pytest.raises(TooManyRunningTasks):
        await make_session().post(EP, {})
    assert fake.count(EP) == 1


async def test_invalid_params_is_not_retried(fake: FakeApi, make_session: SessionFactory) -> None:
    fake.defaults[EP] = err(400, "invalid_params", "field foo unknown")
    with pytest.raises(InvalidRequest, match="field foo unknown"):
        await make_session().post(EP, {})
    assert fake.count(EP) == 1


async def test_the_ledger_can_stop_a_request_before_it_is_sent(
    fake: FakeApi, make_session: SessionFactory, hooks: RecordingHooks
) -> None:
    fake.defaults[EP] = ok({"videos": [{"id": 1}]})
    hooks.budget = 1
    session = make_session()
    await session.post(EP, {}, counted=True, records_of=lambda d: len(d["videos"]))
    with pytest.raises(QuotaExhausted):
        await session.post(EP, {}, counted=True)
    assert fake.count(EP) == 1
    assert hooks.settled == [(EP, True, 1)]


async def test_uncounted_calls_skip_the_ledger(
    fake: FakeApi, make_session: SessionFactory, hooks: RecordingHooks
) -> None:
    fake.defaults[EP] = ok({})
    hooks.budget = 0
    await make_session().post(EP, {})
    assert hooks.reserved == []


async def test_secrets_never_reach_logs_errors_or_reprs(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    token1 = f"clt.tok1-{SECRET[:3]}"
    fake.script(
        EP,
        err(401, "access_token_invalid", f"token {token1} expired"),
        raw(500, f"<html>{SECRET}</html>".encode()),
        err(400, "invalid_params", f"bad secret {SECRET} and token clt.tok2-{SECRET[:3]}"),
    )
    session = make_session()
    with structlog.testing.capture_logs() as logs, pytest.raises(InvalidRequest) as info:
        await session.post(EP, {"q": 1})
    texts = [repr(e) for e in logs] + [str(info.value), repr(info.value), repr(session)]
    texts.append(repr(Credentials(KEY, SECRET)))
    assert any(e["event"] == "token_refreshed" for e in logs)
    for text in texts:
        assert SECRET not in text
        assert "clt.tok" not in text
    assert "[redacted]" in str(info.value)


async def test_a_window_failing_on_the_server_gives_up_after_two_5xx(
    fake: FakeApi, make_session: SessionFactory, hooks: RecordingHooks
) -> None:
    # A caller that can split the window asks to stop after two 5xx answers, not the policy's
    # four attempts: each failed call still costs quota.
    fake.defaults[EP] = err(500, "internal_error", "Something went wrong")
    with pytest.raises(TransientError) as info:
        await make_session().post(EP, {}, counted=True, give_up_5xx=2)
    assert info.value.kind == "5xx"
    assert fake.count(EP) == 2 and len(hooks.reserved) == 2


async def test_connection_failures_keep_the_whole_policy_when_splitting_is_possible(
    fake: FakeApi, make_session: SessionFactory, hooks: RecordingHooks
) -> None:
    # Resets say nothing about the window: they are retried as always, and only the server's
    # own 5xx answers count towards giving the window up.
    fake.script(EP, reset(), reset(), err(500, "internal_error", "x"))
    fake.defaults[EP] = ok({"fine": True})
    assert await make_session().post(EP, {}, give_up_5xx=2) == {"fine": True}
    assert hooks.errors == ["connection", "connection", "5xx"]
    fake.defaults[EP] = reset()
    with pytest.raises(TransientError) as info:
        await make_session().post(EP, {}, give_up_5xx=1)
    assert info.value.kind == "connection" and fake.count(EP) == 4 + FAST.attempts


async def test_a_failing_token_endpoint_is_not_the_windows_5xx(
    fake: FakeApi, make_session: SessionFactory, hooks: RecordingHooks
) -> None:
    fake.script(TOKEN, raw(502, b""), raw(502, b""))
    fake.defaults[EP] = ok({"fine": True})
    assert await make_session().post(EP, {}, give_up_5xx=1) == {"fine": True}
    assert hooks.errors == ["token_unavailable", "token_unavailable"]
