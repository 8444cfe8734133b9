"""The real backends against the real simulator on loopback: results equal the oracle's."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, cast

import anyio
import pytest

from harvester._exceptions import QuotaExhausted
from harvester.api import (
    Page,
    PollPolicy,
    ResearchApiClient,
    RetryPolicy,
    RqsClient,
)
from harvester.query import parse_rest_query, parse_seed_query
from harvester.simulator.app import Simulator
from tests.api.conftest import RecordingHooks, sim_session

pytestmark = pytest.mark.anyio

DAY = 86_400
START = 1_640_995_200  # 2022-01-01 UTC
REST_Q = parse_rest_query(
    {"and": [{"operation": "IN", "field_name": "region_code", "field_values": ["NL", "DE", "US"]}]}
)
SEED_Q = parse_seed_query(
    [
        {
            "operator": "and",
            "conditions": [
                {"field": "region_code", "operator": "in", "field_values": ["NL", "DE", "US"]}
            ],
        }
    ]
)
FIELDS = ("id", "create_time", "username", "video_description", "region_code")
RETRY = RetryPolicy(attempts=10, wait_initial=0.5, wait_jitter=0.0, wait_scale=1e-4)
POLL = PollPolicy(initial=0.02, maximum=0.1, timeout=30.0, busy_timeout=30.0)
FLAKY = {
    "http_500": 0.08,
    "gateway_timeout": 0.03,
    "empty_body": 0.03,
    "truncated_body": 0.03,
    "connection_reset": 0.03,
    "token_expiry": 0.03,
    "search_id_rejected": 0.1,
    "invalid_cursor": 0.1,
    "short_page": 0.2,
    "cursor_missing": 0.2,
    "silent_empty": 0.5,
    "duplicate": 0.2,
    "control_chars": 0.2,
    "analysis_failed": 0.3,
}


def no_control_chars(records: list[dict[str, Any]]) -> bool:
    text = repr(records)
    return not any(f"\\x{c:02x}" in text for c in (*range(0, 9), *range(11, 32)))


async def test_rest_window_equals_the_oracle() -> None:
    async with sim_session() as (sim, session):
        client = ResearchApiClient(session, max_count=50)
        ids = [
            r["id"]
            async for p in client.pages(REST_Q, START, START + 3 * DAY, FIELDS)
            for r in p.records
        ]
        assert len(ids) == len(set(ids))
        assert set(ids) == sim.oracle(REST_Q, START, START + 3 * DAY)
        assert ids


@pytest.mark.slow
async def test_rest_survives_every_fault_and_still_equals_the_oracle() -> None:
    hooks = RecordingHooks()
    async with sim_session(hooks, faults=FLAKY) as (sim, session):
        client = ResearchApiClient(session, max_count=20, search_id_wait=0.001)
        records = []
        restarted = 0
        async for p in client.pages(REST_Q, START, START + 2 * DAY, FIELDS):
            records.extend(p.records)
            restarted += p.restarted
        ids = [r["id"] for r in records]
        assert len(ids) == len(set(ids))
        assert set(ids) == sim.oracle(REST_Q, START, START + 2 * DAY)
        assert no_control_chars(records)
        assert {"5xx", "bad_body", "search_id_invalid"} <= set(hooks.errors)
        staged = {"http_500", "short_page", "search_id_rejected", "invalid_cursor"}
        assert staged | {"cursor_missing", "duplicate", "control_chars"} <= set(sim.stats.faults)
        assert len(hooks.reserved) == len(hooks.settled)


async def test_rest_token_is_renewed_before_it_expires() -> None:
    async with sim_session(token_ttl=1.0) as (sim, session):
        client = ResearchApiClient(session, max_count=100)
        await client.query(REST_Q, _day(0), _day(0), FIELDS)
        sim.clock.advance(0.95)  # past 90 % of the token's life, still before expiry
        session.clock = lambda: 1e9  # the session's clock agrees that the token is old
        await client.query(REST_Q, _day(0), _day(0), FIELDS)
        assert sim.stats.tokens_issued == 2
        assert sim.stats.responses["rest.video_query"].get(401, 0) == 0


class WaitOnSimClock(RecordingHooks):
    """Spends each chosen retry delay on the simulator's clock instead of sleeping it."""

    sim: Simulator | None = None

    def on_retry(self, kind: str, attempt: int, delay: float) -> None:
        super().on_retry(kind, attempt, delay)
        assert self.sim is not None
        self.sim.clock.advance(delay)


async def test_retry_after_from_the_rate_limit_is_honoured() -> None:
    hooks = WaitOnSimClock()
    async with sim_session(hooks, rate_limit_per_minute=2) as (sim, session):
        hooks.sim = sim
        client = ResearchApiClient(session, max_count=100)
        for _ in range(3):
            await client.query(REST_Q, _day(0), _day(0), FIELDS)
        assert hooks.retries and hooks.retries[0][0] == "rate_limited"
        assert hooks.retries[0][2] >= 1.0


async def test_rest_daily_quota_is_exhausted_not_retried() -> None:
    async with sim_session(daily_requests=2) as (sim, session):
        client = ResearchApiClient(session, max_count=10)
        with pytest.raises(QuotaExhausted):
            await client.query(REST_Q, _day(0), _day(2), FIELDS)
        assert sim.stats.responses["rest.video_query"][429] == 1


async def test_rqs_query_equals_the_oracle() -> None:
    async with sim_session() as (sim, session):
        client = RqsClient(session, poll=POLL, page_size=100)
        window = SEED_Q.with_window(START, START + 2 * DAY)
        records = await client.query(window, FIELDS)
        ids = [r["id"] for r in records]
        assert len(ids) == len(set(ids))
        assert set(ids) == sim.oracle(SEED_Q, START, START + 2 * DAY)


async def test_rqs_pages_checkpoint_the_task_and_resume_from_it() -> None:
    async with sim_session() as (sim, session):
        client = RqsClient(session, poll=POLL, page_size=50)
        pages = cast(AsyncGenerator[Page, None], client.pages(SEED_Q, START, START + DAY, FIELDS))
        first = await anext(pages)
        assert first.records == [] and first.task_id is not None
        second = await anext(pages)
        await pages.aclose()  # a crash after the second page was stored
        rest = [
            r["id"]
            async for p in client.pages(
                SEED_Q, START, START + DAY, FIELDS, resume=second.resume, seen_ids=[]
            )
            for r in p.records
        ]
        got = {r["id"] for r in second.records} | set(rest)
        assert got == sim.oracle(SEED_Q, START, START + DAY)
        assert sim.stats.tasks_created == 1


@pytest.mark.slow
async def test_rqs_survives_faults_failed_tasks_and_the_running_task_cap() -> None:
    hooks = RecordingHooks()
    async with sim_session(hooks, faults=FLAKY, max_running_tasks=1) as (sim, session):
        client = RqsClient(session, poll=POLL, page_size=40)
        results: dict[int, set[int]] = {}

        async def one(day: int) -> None:
            recs = await client.query(
                SEED_Q.with_window(START + day * DAY, START + (day + 1) * DAY), FIELDS
            )
            results[day] = {r["id"] for r in recs}
            assert no_control_chars(recs)

        async with anyio.create_task_group() as tg:
            for day in range(3):
                tg.start_soon(one, day)
        for day, ids in results.items():
            assert ids == sim.oracle(SEED_Q, START + day * DAY, START + (day + 1) * DAY)
        assert "too_many_running_tasks" in hooks.errors


def _day(n: int) -> Any:
    from datetime import date, timedelta

    return date(2022, 1, 1) + timedelta(days=n)
