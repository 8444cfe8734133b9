"""Daily quotas (requests and records, failed calls included) and the short-term limit."""

from __future__ import annotations

from datetime import date

import pytest

from ._client import connect, day_epoch
from .test_rqs import create, window

pytestmark = pytest.mark.anyio

NL = {"and": [{"operation": "EQ", "field_name": "region_code", "field_values": ["NL"]}]}
MAR1 = day_epoch(date(2023, 3, 1))
#: Ten seconds before 00:00 UTC.
EVENING = day_epoch(date(2024, 6, 2)) - 10


async def test_request_quota_counts_failed_calls_and_resets_at_midnight() -> None:
    async with connect(daily_requests=4, clock_start=EVENING) as c:
        assert (await c.query(NL, "20230301", "20230301")).status == 200
        assert (await c.query(NL, "20230301", "20230401")).status == 400  # counted
        c.sim.set_faults(http_500=1.0)
        assert (await c.query(NL, "20230301", "20230301")).status == 500  # counted
        c.sim.set_faults(http_500=0.0)
        assert (await c.query(NL, "20230301", "20230301")).status == 200
        spent = await c.query(NL, "20230301", "20230301")
        # The public API's documented code (research-tools facts, fact 6).
        assert spent.status == 429 and spent.code == "daily_quota_limit_exceeded"
        assert spent.message == "daily quota exceeded" and "Retry-After" not in spent.headers
        rqs = await c.rqs("create", {"category": "video", "condition_groups": [], "fields": "id"})
        assert rqs.status == 429 and rqs.code == "daily_quota_exceeded"
        snap = c.sim.stats.snapshot(c.sim.ledger)
        assert snap["quota"]["days"]["2024-06-01"]["requests"] == 4
        c.sim.clock.advance(11)
        assert (await c.query(NL, "20230301", "20230301")).status == 200


async def test_status_polls_and_cancels_are_not_counted() -> None:
    async with connect(daily_requests=2) as c:
        task = await create(c, window(MAR1, MAR1 + 86_400))
        for _ in range(5):
            assert (await c.rqs("status", {"task_id": task})).status == 200
        assert (await c.rqs("cancel", {"task_id": task})).status == 200
        assert c.sim.ledger.requests[c.sim.clock.today().isoformat()] == 1


async def test_record_quota_stops_delivery() -> None:
    async with connect(daily_records=150, videos_per_day=300) as c:
        first = await c.query(NL, "20230301", "20230310", max_count=100)
        d = first.data
        second = await c.query(NL, "20230301", "20230310", max_count=100, cursor=100,
                               search_id=d["search_id"])  # fmt: skip
        assert second.status == 200
        third = await c.query(NL, "20230301", "20230310", max_count=100, cursor=200,
                              search_id=d["search_id"])  # fmt: skip
        assert third.status == 429 and third.code == "daily_quota_limit_exceeded"
        assert c.sim.stats.records_delivered == 200


async def test_rqs_pages_never_overspend_the_record_quota() -> None:
    async with connect(daily_records=120, rqs_created=0, rqs_validating=0, rqs_processing=0) as c:
        task = await create(c, window(MAR1, MAR1 + 3 * 86_400), limit=1_000)
        a = await c.rqs("result", {"task_id": task, "max_count": 1_000})
        assert len(a.data["result"]) == 120 and a.data["cursor"] == 120 and a.data["has_more"]
        b = await c.rqs("result", {"task_id": task, "cursor": 120})
        assert b.status == 429 and b.code == "daily_quota_exceeded"


async def test_short_term_rate_limit_has_retry_after() -> None:
    async with connect(rate_limit_per_minute=3) as c:
        for _ in range(3):
            assert (await c.query(NL, "20230301", "20230301")).status == 200
        limited = await c.query(NL, "20230301", "20230301")
        assert limited.status == 429 and limited.code == "rate_limit_exceeded"
        assert limited.message == "rate limit exceeded"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        c.sim.clock.advance(60)
        assert (await c.query(NL, "20230301", "20230301")).status == 200


async def test_quota_profile_keeps_refusing_for_a_grace_after_midnight() -> None:
    async with connect("quota", daily_requests=2, clock_start=EVENING) as c:
        assert c.sim.config.quota_grace == 300
        for _ in range(2):
            assert (await c.query(NL, "20230301", "20230301")).status == 200
        assert (await c.query(NL, "20230301", "20230301")).status == 429
        c.sim.clock.advance(20)  # 00:00:10 UTC: a new day, but still refused
        assert (await c.query(NL, "20230301", "20230301")).status == 429
        c.sim.clock.advance(300)
        assert (await c.query(NL, "20230301", "20230301")).status == 200
