"""RqsClient sequences staged on the scripted API: expiry, failed analysis, busy slots."""

from __future__ import annotations

import pytest

import harvester.api
from harvester._exceptions import QueryError
from harvester.api import PollPolicy, RqsClient
from tests.api.conftest import RecordingHooks, SessionFactory
from tests.api.fakeapi import FakeApi, err, ok

pytestmark = pytest.mark.anyio
CREATE = "/v2/research/query_task/create/"
STATUS = "/v2/research/query_task/status/"
RESULT = "/v2/research/query_task/result/"
CANCEL = "/v2/research/query_task/cancel/"
POLL = PollPolicy(initial=0.001, maximum=0.005, timeout=5.0, busy_timeout=5.0)
GROUPS = [
    {"operator": "and", "conditions": [{"field": "id", "operator": "IN", "field_values": ["1"]}]}
]


async def test_create_request_shape_and_cancel(fake: FakeApi, make_session: SessionFactory) -> None:
    fake.script(CREATE, ok({"task_id": 12345}))
    fake.script(CANCEL, ok({"success": True}))
    client = RqsClient(make_session(), poll=POLL)
    assert await client.create(GROUPS, "id,username", 200) == 12345
    assert fake.calls(CREATE)[0] == {
        "category": "video",
        "condition_groups": GROUPS,
        "fields": "id,username",
        "limit": 200,
    }
    assert await client.cancel(12345) is True


async def test_bad_queries_fail_before_any_request(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    client = RqsClient(make_session(), poll=POLL)
    with pytest.raises(QueryError):
        await client.create(GROUPS, "id,no_such_field", 100)
    with pytest.raises(QueryError):
        await client.create(GROUPS, "id", 10**6)
    assert fake.requests == []


async def test_busy_slots_failed_analysis_and_expiry_are_absorbed(
    fake: FakeApi, make_session: SessionFactory, hooks: RecordingHooks
) -> None:
    fake.script(
        CREATE,
        err(429, "too_many_running_tasks", "5 running"),
        ok({"task_id": 1}),
        ok({"task_id": 2}),
        ok({"task_id": 3}),
    )
    fake.script(
        STATUS,
        ok({"status": "Processing"}),
        ok({"status": "AnalysisFailed", "message": "analysis broke"}),
        ok({"status": "completed"}),
    )
    fake.defaults[STATUS] = ok({"status": "Completed"})
    fake.script(
        RESULT,
        ok({"result": [{"id": 1}, {"id": 2}], "cursor": 2, "has_more": True, "total": 3}),
        err(404, "task_expired", "gone"),
        ok({"result": [{"id": 1}, {"id": 2}], "has_more": True, "total": 3}),
        ok({"result": [{"id": 3}], "cursor": 3, "has_more": False, "total": 3}),
    )
    client = RqsClient(make_session(), poll=POLL, page_size=2, limit=3)
    pages = [p async for p in client.task_pages(GROUPS, ["id"])]
    assert [(p.task_id, p.restarted, [r["id"] for r in p.records]) for p in pages] == [
        (1, False, []),
        (2, True, []),
        (2, False, [1, 2]),
        (3, True, []),
        (3, False, []),
        (3, False, [3]),
    ]
    assert pages[-1].saturated
    assert [c["cursor"] for c in fake.calls(RESULT)] == [0, 2, 0, 2]
    assert "too_many_running_tasks" in hooks.errors


def test_all_is_complete_and_sorted() -> None:
    public = {n for n in dir(harvester.api) if not n.startswith("_")}
    modules = {"annotations", "backend", "pyrqs_backend", "research", "rqs_client", "types"}
    assert set(harvester.api.__all__) == public - modules
    assert list(harvester.api.__all__) == sorted(harvester.api.__all__)
