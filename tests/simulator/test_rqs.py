"""The Research Query Service binding: lifecycle, limits, paging, caps and expiry."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from harvester.simulator.corpus import DAY

from ._client import Client, connect, day_epoch

pytestmark = pytest.mark.anyio

MAR1 = day_epoch(date(2023, 3, 1))
FAST: dict[str, Any] = {"rqs_created": 1.0, "rqs_validating": 1.0, "rqs_processing": 1.0}


def window(start: int, end: int, *extra: dict[str, Any]) -> list[dict[str, Any]]:
    conds = [
        {"field": "create_time", "operator": "gte", "field_values": [str(start)]},
        {"field": "create_time", "operator": "LT", "field_values": [str(end)]},
        *extra,
    ]
    return [{"operator": "and", "conditions": conds}]


async def create(c: Client, groups: list[dict[str, Any]], **kw: Any) -> int:
    a = await c.rqs("create", {"category": "video", "condition_groups": groups,
                               "fields": kw.pop("fields", "id,create_time"), **kw})  # fmt: skip
    assert a.status == 200, a.body
    return int(a.data["task_id"])


async def state(c: Client, task_id: int) -> dict[str, Any]:
    a = await c.rqs("status", {"task_id": task_id})
    assert a.status == 200, a.body
    return a.data


async def all_results(c: Client, task_id: int, page: int = 1_000) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = 0
    while True:
        a = await c.rqs("result", {"task_id": task_id, "cursor": cursor, "max_count": page})
        assert a.status == 200, a.body
        out.extend(a.data["result"])
        cursor = a.data["cursor"]
        if not a.data["has_more"]:
            assert len(out) == a.data["total"]
            return out


async def test_lifecycle_on_the_clock_and_results_match_the_oracle() -> None:
    async with connect(**FAST) as c:
        groups = window(MAR1, MAR1 + 2 * DAY)
        task = await create(c, groups, fields="id,create_time,username", limit=10_000)
        seen = [(await state(c, task))["status"]]
        early = await c.rqs("result", {"task_id": task})
        assert early.status == 409 and early.code == "task_not_completed"
        for _ in range(3):
            c.sim.clock.advance(1.0)
            seen.append((await state(c, task))["status"])
        assert seen == ["Created", "Validating", "Processing", "Completed"]
        got = await all_results(c, task, page=77)
        assert all(set(r) == {"id", "create_time", "username"} for r in got)
        assert {r["id"] for r in got} == c.sim.oracle(groups, 0, 2**62)


async def test_limit_saturation_returns_exactly_limit_not_by_time() -> None:
    async with connect(rqs_processing=0.0, rqs_validating=0.0, rqs_created=0.0) as c:
        groups = window(MAR1, MAR1 + 3 * DAY)
        truth = sorted(c.sim.oracle(groups, 0, 2**62))
        task = await create(c, groups, limit=100)
        got = sorted(r["id"] for r in await all_results(c, task))
        assert len(got) == 100 and set(got) <= set(truth)
        assert got != truth[:100] and got != truth[-100:]
        again = await create(c, groups, limit=100)
        assert sorted(r["id"] for r in await all_results(c, again)) == got  # deterministic


async def test_analysis_failed_carries_a_message_when_validation_is_deferred() -> None:
    async with connect(validate_on_create=False, **FAST) as c:
        bad = [{"operator": "and", "conditions": [
            {"field": "region_code", "operator": "GT", "field_values": ["NL"]}]}]  # fmt: skip
        task = await create(c, bad)
        c.sim.clock.advance(3)
        st = await state(c, task)
        assert st["status"] == "AnalysisFailed" and "region_code" in st["message"]


async def test_invalid_requests_are_400() -> None:
    async with connect(stage="test") as c:
        base = {"category": "video", "condition_groups": window(MAR1, MAR1 + DAY), "fields": "id"}
        cases: list[dict[str, Any]] = [
            {**base, "fields": "id,nonsense"},
            {**base, "limit": 5_001},  # test stage: at most 5,000
            {**base, "category": "user"},
            {**base, "condition_groups": [{"operator": "xor", "conditions": []}]},
            {
                **base,
                "condition_groups": window(
                    MAR1,
                    MAR1 + DAY,
                    {"field": "hashtag_names", "operator": "EQ", "field_values": ["a"]},
                ),
            },
        ]
        for body in cases:
            a = await c.rqs("create", body)
            assert a.status == 400 and a.code == "invalid_params", body


async def test_stage_default_limits() -> None:
    async with connect(stage="test", rqs_processing=0, rqs_validating=0, rqs_created=0) as c:
        task = await create(c, window(MAR1, MAR1 + 5 * DAY))
        a = await c.rqs("result", {"task_id": task, "max_count": 10_000})
        assert a.data["total"] == 100
        too_big = await c.rqs("result", {"task_id": task, "max_count": 10_001})
        assert too_big.status == 400


async def test_running_task_cap_and_cancel() -> None:
    async with connect(max_running_tasks=2, **FAST) as c:
        groups = window(MAR1, MAR1 + DAY)
        t1, _t2 = await create(c, groups), await create(c, groups)
        a = await c.rqs("create", {"category": "video", "condition_groups": groups,
                                   "fields": "id"})  # fmt: skip
        assert a.status == 429 and a.code == "too_many_running_tasks"
        cancelled = await c.rqs("cancel", {"task_id": t1})
        assert cancelled.data == {"success": True}
        assert (await state(c, t1))["status"] == "Cancelled"
        assert (await c.rqs("cancel", {"task_id": t1})).data == {"success": False}
        await create(c, groups)  # a slot is free again
        c.sim.clock.advance(5)
        await create(c, groups)  # finished tasks do not count


async def test_not_found_and_expiry() -> None:
    async with connect(result_ttl=100, **FAST) as c:
        missing = await c.rqs("status", {"task_id": 1})
        assert missing.status == 404 and missing.code == "task_not_found"
        assert (await c.rqs("result", {"task_id": 1})).code == "task_not_found"
        task = await create(c, window(MAR1, MAR1 + DAY))
        c.sim.clock.advance(3 + 99)
        assert (await c.rqs("result", {"task_id": task})).status == 200
        c.sim.clock.advance(2)
        a = await c.rqs("result", {"task_id": task})
        assert a.status == 404 and a.code == "task_expired"
