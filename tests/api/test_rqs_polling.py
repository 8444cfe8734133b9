"""When RQS tasks are polled and when their results are asked for, against the simulator.

Nothing here measures speed: each test sets poll intervals far longer than the test may take,
so a task is only seen done in time if the rule under test made it ask early, and counts the
status polls the simulator answered.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from harvester._exceptions import ApiError
from harvester.api import PollPolicy, RetryPolicy, RqsClient
from harvester.api._tasks import TaskClock
from harvester.query import parse_seed_query
from harvester.simulator.app import Simulator
from tests.api.conftest import RecordingHooks, sim_session

pytestmark = pytest.mark.anyio

DAY = 86_400
START = 1_640_995_200  # 2022-01-01 UTC
SEED_Q = parse_seed_query(
    [{"operator": "and", "conditions": [{"field": "region_code", "operator": "in",
                                         "field_values": ["NL", "DE"]}]}]
)  # fmt: skip
FIELDS = ("id", "create_time", "region_code")
RETRY = RetryPolicy(attempts=3, wait_initial=0.5, wait_jitter=0.0, wait_scale=1e-4)
#: Left to its intervals, a task would first be asked seconds after the test gave up on it.
SLOW = PollPolicy(initial=60.0, maximum=60.0, timeout=600.0, busy_timeout=600.0)
#: Tasks that are done almost as soon as they are created.
INSTANT: dict[str, Any] = {"rqs_created": 0.0, "rqs_validating": 0.0, "rqs_processing": 0.001}


@asynccontextmanager
async def client(
    poll: PollPolicy, hooks: RecordingHooks | None = None, **sim: Any
) -> AsyncIterator[tuple[Simulator, RqsClient]]:
    async with sim_session(hooks, retry=RETRY, videos_per_day=50, **sim) as (simulator, session):
        yield simulator, RqsClient(session, poll=poll, page_size=100)


async def create(rqs: RqsClient, day: int) -> int:
    window = SEED_Q.with_window(START + day * DAY, START + (day + 1) * DAY)
    return await rqs.create(window, FIELDS, 1000)


def polls(sim: Simulator) -> int:
    return sum(sim.stats.responses["rqs.status"].values())


async def test_a_task_seen_completed_wakes_the_tasks_waiting_beside_it() -> None:
    async with client(SLOW, **INSTANT) as (sim, rqs):
        task = await create(rqs, 0)
        done: list[str] = []

        async def wait() -> None:
            done.append((await rqs.wait(task, fresh=True)).status)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await anyio.wait_all_tasks_blocked()
                assert polls(sim) == 0  # asleep: its first poll is tens of seconds away
                # A task created at the same time is seen Completed at an age of 1 ms: this
                # one is older by now, so it asks at once, and once.
                rqs.clock.completed(0.0, 0.001)
        assert done == ["Completed"]
        assert polls(sim) == 1


async def test_news_wakes_only_the_waiters_not_yet_seen_running_at_that_age() -> None:
    clock = TaskClock()
    woke: list[float] = []
    started = anyio.current_time() - 0.2  # a waiter 0.2 s old, last seen running at 0.1 s

    async def sleeper() -> None:
        await clock.sleep(60.0, started, 0.1)
        woke.append(anyio.current_time() - started)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper)
            await anyio.wait_all_tasks_blocked()
            clock.completed(0.0, 0.05)  # done at 0.05 s: this waiter outlived it, sleeps on
            await anyio.wait_all_tasks_blocked()
            assert woke == []
            clock.completed(0.1, 0.15)  # done at 0.15 s, past the waiter's last poll: ask now
    assert len(woke) == 1


async def test_no_new_task_sleeps_past_the_age_recent_tasks_were_seen_done() -> None:
    async with client(SLOW, **INSTANT) as (sim, rqs):
        # The first task is asked at an age of 60 s × its phase; a recent task seen done at
        # 1 ms brings the first poll of the next one forward to that age.
        rqs.clock.completed(0.0, 0.001)
        task = await create(rqs, 0)
        with anyio.fail_after(10):
            status = await rqs.wait(task, fresh=True)
        assert status.status == "Completed"
        assert polls(sim) == 1


async def test_tasks_started_together_poll_out_of_step() -> None:
    clock = TaskClock()
    phases: list[float] = []
    for n in range(1, 25):
        phases.append(clock.phase())
        gaps = [b - a for a, b in itertools.pairwise(sorted([*phases, 1.0 + min(phases)]))]
        assert 0.4 / n < min(gaps) and max(gaps) < 2.0 / n, (n, phases)  # no crowd, no hole


def test_polls_share_the_rate_among_the_waiting_tasks() -> None:
    policy = PollPolicy(rate=4.0)
    assert policy.spacing(1) == 0.25
    assert policy.spacing(6) == 1.5
    assert PollPolicy().spacing(6) == 0.0


async def test_a_waiting_task_keeps_its_polls_within_the_rate() -> None:
    # Every millisecond by its intervals, but a rate of 2 a second leaves one waiting task one
    # poll in 0.5 s: after its first poll the next would land past its 0.4 s timeout.
    rated = PollPolicy(initial=0.001, maximum=0.001, timeout=0.4, rate=2.0)
    async with client(rated, rqs_processing=1000.0) as (sim, rqs):
        task = await create(rqs, 0)
        with pytest.raises(ApiError) as raised:
            await rqs.wait(task, fresh=True)
        assert raised.value.kind == "task_timeout"
        assert polls(sim) == 1
