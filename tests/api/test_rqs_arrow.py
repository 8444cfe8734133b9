"""RqsClient(arrow=True) against the simulator: pages carry `rows`, equal to the dict pages,
counted the same by the quota hooks, and a page the fast path refuses still arrives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import pyarrow as pa
import pytest

from harvester.api import ApiSession, Page, PollPolicy, RetryPolicy, RqsClient, _http
from harvester.api._pages import record_type
from harvester.query import parse_seed_query
from harvester.simulator.app import Simulator
from tests.api.conftest import RecordingHooks
from tests.api.conftest import sim_session as shared_sim_session

pytestmark = pytest.mark.anyio

DAY = 86_400
START = 1_640_995_200  # 2022-01-01 UTC
RESULT = "/v2/research/query_task/result/"
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
FIELDS = (
    "id",
    "create_time",
    "username",
    "region_code",
    "like_count",
    "view_count",
    "comment_count",
    "share_count",
    "hashtag_names",
    "hashtag_info_list",
    "video_label",
)
RETRY = RetryPolicy(attempts=10, wait_initial=0.5, wait_jitter=0.0, wait_scale=1e-4)
POLL = PollPolicy(initial=0.01, maximum=0.05, timeout=30.0, busy_timeout=30.0)
INSTANT = {"rqs_created": 0.0, "rqs_validating": 0.0, "rqs_processing": 0.0}


@asynccontextmanager
async def sim_session(
    hooks: RecordingHooks, **overrides: Any
) -> AsyncIterator[tuple[Simulator, ApiSession]]:
    overrides.setdefault("rate_limit_per_minute", 100_000)
    async with shared_sim_session(hooks, retry=RETRY, **overrides) as pair:
        yield pair


@dataclass
class Run:
    pages: list[Page]
    hooks: RecordingHooks
    oracle: set[int]
    faults: dict[str, int]

    @property
    def result_pages(self) -> list[Page]:
        """Pages that came from a result call (not the empty page announcing a task)."""
        return [p for p in self.pages if p.raw_count]

    @property
    def records(self) -> list[dict[str, Any]]:
        return [r for p in self.pages for r in p.as_records()]

    def settled(self) -> list[tuple[bool, int]]:
        return [(ok, n) for endpoint, ok, n in self.hooks.settled if endpoint == RESULT]


async def harvest(
    *,
    arrow: bool,
    days: int = 2,
    page_size: int = 25,
    seen_ids: tuple[int, ...] = (),
    expire_after: int | None = None,
    **overrides: Any,
) -> Run:
    """Every page of one RQS window; with `expire_after`, the task's results expire once that
    many result pages have arrived (the client creates the task again and starts over)."""
    hooks = RecordingHooks()
    overrides = {**INSTANT, **overrides}
    async with sim_session(hooks, **overrides) as (sim, session):
        client = RqsClient(session, poll=POLL, page_size=page_size, arrow=arrow)
        pages: list[Page] = []
        async for page in client.pages(
            SEED_Q, START, START + days * DAY, FIELDS, seen_ids=seen_ids
        ):
            pages.append(page)
            arrived = sum(1 for p in pages if p.raw_count)
            if page.raw_count and arrived == expire_after:
                sim.clock.advance(sim.config.result_ttl + 1.0)
        return Run(
            pages, hooks, sim.oracle(SEED_Q, START, START + days * DAY), dict(sim.faults.counts)
        )


def ids_per_page(run: Run) -> list[list[int]]:
    return [[r["id"] for r in p.as_records()] for p in run.pages]


async def test_arrow_pages_carry_rows_and_equal_the_dict_pages() -> None:
    fast = await harvest(arrow=True)
    slow = await harvest(arrow=False)
    assert len(fast.result_pages) >= 3
    record = record_type(FIELDS)
    for p in fast.result_pages:
        assert p.rows is not None and p.records == []
        assert isinstance(p.rows, pa.StructArray) and p.rows.type.equals(record)
        assert p.count == len(p.rows) == p.raw_count  # no repeats on a clean simulator
    for p in slow.result_pages:
        assert p.rows is None and p.records
        assert p.count == len(p.records)
    # The empty page that announces the task is the same either way.
    assert fast.pages[0].rows is None and fast.pages[0].records == []
    assert fast.pages[0].as_records() == [] and fast.pages[0].count == 0
    assert [
        (p.cursor, p.has_more, p.raw_count, p.total, p.task_id is not None) for p in fast.pages
    ] == [(p.cursor, p.has_more, p.raw_count, p.total, p.task_id is not None) for p in slow.pages]
    assert [p.as_records() for p in fast.pages] == [p.as_records() for p in slow.pages]
    ids = [r["id"] for r in fast.records]
    assert len(ids) == len(set(ids)) and set(ids) == fast.oracle


async def test_quota_hooks_count_the_same_records_either_way() -> None:
    fast = await harvest(arrow=True, page_size=40)
    slow = await harvest(arrow=False, page_size=40)
    assert fast.settled() == slow.settled()
    assert all(ok for ok, _ in fast.settled())
    assert sum(n for _, n in fast.settled()) == len(fast.oracle) == len(fast.records)
    assert [n for _, n in fast.settled()] == [p.raw_count for p in fast.result_pages]
    assert len(fast.hooks.reserved) == len(fast.hooks.settled)
    assert fast.hooks.reserved == slow.hooks.reserved


async def test_a_page_the_fast_path_refuses_arrives_the_general_way() -> None:
    faults = {"wrong_types": 1.0}
    fast = await harvest(arrow=True, faults=faults)
    slow = await harvest(arrow=False, faults=faults)
    assert fast.faults.get("wrong_types", 0) > 0
    assert fast.result_pages
    for p in fast.result_pages:
        assert p.rows is None and p.records, "a page with string counts went the fast way"
    assert [p.records for p in fast.pages] == [p.records for p in slow.pages]
    # The general path's coercion is left to the sink: counts arrive as the API sent them.
    assert any(isinstance(r.get("like_count"), str) for r in fast.records)
    ids = [r["id"] for r in fast.records]
    assert len(ids) == len(set(ids)) and set(ids) == fast.oracle
    assert [n for _, n in fast.settled()] == [p.raw_count for p in fast.result_pages]


@pytest.mark.parametrize("faults", [{}, {"wrong_types": 1.0}], ids=["fast", "general"])
async def test_seen_ids_and_a_restarted_task_dedupe_the_same_either_way(
    faults: dict[str, float],
) -> None:
    oracle = sorted((await harvest(arrow=False)).oracle)
    skip = tuple(oracle[5:40:3])
    kw: dict[str, Any] = {"seen_ids": skip, "expire_after": 2, "result_ttl": 60.0}
    fast = await harvest(arrow=True, faults=faults, **kw)
    slow = await harvest(arrow=False, faults=faults, **kw)
    assert any(p.restarted for p in fast.pages)
    if faults:
        assert all(p.rows is None for p in fast.pages)
    else:
        assert all(p.rows is not None for p in fast.result_pages)
    # Pages after the restart repeat ids already delivered: dropped, though counted raw.
    assert sum(p.raw_count for p in fast.pages) > sum(p.count for p in fast.pages)
    assert ids_per_page(fast) == ids_per_page(slow)
    assert [(p.raw_count, p.count, p.restarted) for p in fast.pages] == [
        (p.raw_count, p.count, p.restarted) for p in slow.pages
    ]
    ids = [r["id"] for r in fast.records]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(oracle) - set(skip)


async def test_the_sdk_style_query_returns_the_same_records() -> None:
    results = []
    for arrow in (True, False):
        hooks = RecordingHooks()
        async with sim_session(hooks, **INSTANT) as (_sim, session):
            client = RqsClient(session, poll=POLL, page_size=30, arrow=arrow)
            results.append(await client.query(SEED_Q.with_window(START, START + DAY), FIELDS))
    assert results[0] == results[1] and results[0]


async def test_no_fields_known_no_arrow() -> None:
    """`result_pages` does not know the task's fields: it decodes the general way."""
    hooks = RecordingHooks()
    async with sim_session(hooks, **INSTANT) as (_sim, session):
        client = RqsClient(session, poll=POLL, page_size=30, arrow=True)
        task_id = await client.create(SEED_Q.with_window(START, START + DAY), FIELDS, 1_000)
        await client.wait(task_id)
        pages = [p async for p in client.result_pages(task_id, max_count=30)]
    assert pages and all(p.rows is None and p.records for p in pages)


async def test_bodies_decoded_in_a_worker_thread_give_the_same_pages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    real = anyio.to_thread.run_sync

    async def counting(func: Any, *args: Any, **kw: Any) -> Any:
        calls.append(1)
        return await real(func, *args, **kw)

    monkeypatch.setattr(_http, "THREAD_BYTES", 0)  # every result body goes to a thread
    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    threaded = await harvest(arrow=True)
    monkeypatch.undo()
    inline = await harvest(arrow=True)
    assert len(calls) >= len(threaded.result_pages) > 0
    assert all(p.rows is not None for p in threaded.result_pages)
    assert [p.as_records() for p in threaded.pages] == [p.as_records() for p in inline.pages]
