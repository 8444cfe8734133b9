"""PyrqsBackend over stand-ins for the SDK object: blocking calls, every return shape."""

from __future__ import annotations

import json
import threading
from typing import Any

import anyio
import pytest

from harvester._exceptions import ApiError, TaskAnalysisFailed
from harvester.api import PollPolicy, PyrqsBackend
from harvester.query import parse_seed_query
from tests.api.conftest import RecordingHooks

pytestmark = pytest.mark.anyio
POLL = PollPolicy(initial=0.001, maximum=0.01, timeout=5.0)
GROUPS = [
    {
        "operator": "and",
        "conditions": [{"field": "region_code", "operator": "eq", "field_values": ["NL"]}],
    }
]


class StandIn:
    """Answers like an SDK might: shapes chosen per test, every call on a worker thread."""

    def __init__(self, shape: str, statuses: list[Any], n: int = 25) -> None:
        self.shape = shape
        self.statuses = list(statuses)
        self.records = [{"id": i, "username": f"u\x00{i}"} for i in range(n)]
        self.threads: set[int] = set()
        self.created: list[dict[str, Any]] = []

    def create_query_task(
        self, category: str, condition_groups: Any, fields: str, limit: int
    ) -> Any:
        self.threads.add(threading.get_ident())
        self.created.append({"category": category, "groups": condition_groups, "fields": fields})
        return {"task_id": str(100 + len(self.created))} if self.shape == "dict" else 7

    def check_query_task_status(self, task_id: int) -> Any:
        self.threads.add(threading.get_ident())
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return status

    def get_query_task_result(self, task_id: int) -> Any:
        self.threads.add(threading.get_ident())
        if self.shape == "json":
            return json.dumps(self.records)
        if self.shape == "dict":
            return {"result": self.records}
        return list(self.records)

    def cancel_query_task(self, task_id: int) -> Any:
        return {"success": True} if self.shape == "dict" else True


@pytest.mark.parametrize("shape", ["list", "json", "dict"])
async def test_every_result_shape_gives_clean_records(shape: str) -> None:
    sdk = StandIn(shape, ["Created", {"status": "Processing"}, "Completed"])
    hooks = RecordingHooks()
    backend = PyrqsBackend(sdk, anyio.CapacityLimiter(2), hooks=hooks, poll=POLL, page_size=10)
    records = await backend.query(GROUPS, "id,username", limit=100)
    assert [r["id"] for r in records] == list(range(25))
    assert records[3]["username"] == "u3"
    assert threading.get_ident() not in sdk.threads
    assert sdk.created[0]["fields"] == "id,username"
    assert sdk.created[0]["groups"] == parse_seed_query(GROUPS).to_json()
    assert [h[0] for h in hooks.settled] == [
        "/v2/research/query_task/create/",
        "/v2/research/query_task/result/",
    ]
    assert hooks.settled[-1] == ("/v2/research/query_task/result/", True, 25)
    assert await backend.cancel(7) is True


async def test_pages_resume_from_the_cursor_and_flag_saturation() -> None:
    sdk = StandIn("list", ["Completed"], n=30)
    backend = PyrqsBackend(sdk, anyio.CapacityLimiter(1), poll=POLL, page_size=10, limit=30)
    pages = [p async for p in backend.task_pages(GROUPS, ["id"])]
    assert [p.cursor for p in pages] == [0, 10, 20, 30]
    assert pages[-1].saturated and pages[-1].total == 30
    resumed = [p async for p in backend.task_pages(GROUPS, ["id"], resume=pages[2].resume)]
    assert [r["id"] for p in resumed for r in p.records] == list(range(20, 30))


async def test_a_failed_analysis_is_created_again_a_bounded_number_of_times() -> None:
    sdk = StandIn("list", ["AnalysisFailed"])
    backend = PyrqsBackend(sdk, anyio.CapacityLimiter(1), poll=POLL, analysis_retries=2)
    with pytest.raises(TaskAnalysisFailed):
        await backend.query(GROUPS, "id")
    assert len(sdk.created) == 3


async def test_foreign_sdk_errors_become_api_errors_without_their_message() -> None:
    class Broken(StandIn):
        def check_query_task_status(self, task_id: int) -> Any:
            raise RuntimeError("token=abc123 leaked")

    backend = PyrqsBackend(Broken("list", ["x"]), anyio.CapacityLimiter(1), poll=POLL)
    with pytest.raises(ApiError) as info:
        await backend.status(1)
    assert info.value.kind == "sdk"
    assert "abc123" not in str(info.value)
