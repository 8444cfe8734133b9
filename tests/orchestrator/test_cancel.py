"""Which remote tasks `harvester cancel` and `run --cancel-on-exit` cancel: one rule for both."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harvester.api import ApiSession, Credentials, ResearchApiClient
from harvester.orchestrator._cancel import cancellable
from harvester.state import ShardRecord

LEAF = ShardRecord(
    key="20220101-20220102",
    parent_key=None,
    plan_key="20220101-20220102",
    start=0,
    end=86_400,
    status="pending",
    task_id="7",
    search_id=None,
    cursor=0,
    attempts=0,
    last_error=None,
    error_kind=None,
    records=0,
    pages=1,
    updated_at=0.0,
)


def test_only_tasks_created_and_not_yet_paged_are_cancelled() -> None:
    leaves = {
        "created, announced": LEAF,
        "created, not yet announced": replace(LEAF, pages=0),
        "running": replace(LEAF, status="running"),
        "parked while waiting": replace(LEAF, status="parked"),
        "being paged": replace(LEAF, pages=2),  # finished running: only its pages would go
        "no task": replace(LEAF, task_id=None),
        "done": replace(LEAF, status="done"),
        "split": replace(LEAF, status="split"),
    }
    chosen = {name for name, leaf in leaves.items() if leaf in cancellable([leaf])}
    assert chosen == {
        "created, announced",
        "created, not yet announced",
        "running",
        "parked while waiting",
    }


@pytest.mark.anyio
async def test_the_public_api_has_no_task_to_cancel() -> None:
    async with ApiSession("http://127.0.0.1:9", Credentials("k", "s")) as session:
        assert await ResearchApiClient(session).cancel(7) is False
