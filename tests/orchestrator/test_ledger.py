"""The daily quota end to end: exit 75 and continue tomorrow, or wait for 00:00 UTC in-process.

Either way nothing is lost, nothing is duplicated, and work already done is not paid for again:
the requests of all runs together stay within a small overhead of one clean run's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from harvester._exceptions import QuotaExhausted
from harvester.kinds import KINDS
from harvester.orchestrator import EXIT_OK, EXIT_QUOTA, Harvest, status_report
from harvester.orchestrator._enrich import EnrichStats, _PoolHooks
from harvester.orchestrator._ledger import QuotaGate, QuotaLedger, RunStats
from harvester.simulator.app import Simulator
from harvester.simulator.testing import running_simulator
from harvester.state.sqlite import SqliteState
from tests.orchestrator.conftest import (
    CREDS,
    DAY,
    FAST_TASKS,
    SIM,
    assert_equals_oracle,
    counted_requests,
    make_study,
    next_midnight,
    options,
    oracle,
    read_pyarrow,
    run,
)

pytestmark = pytest.mark.anyio
DAYS = 6
#: The shared clock starts at noon UTC, whatever the time the suite runs: a run started just
#: before 00:00 would otherwise see its first day end under it and count one quota day more.
NOON = 1_700_006_400 + DAY / 2


def counted_calls(sim: Simulator) -> int:
    """Calls to the endpoints the real API counts, answered or refused."""
    return sum(sim.stats.requests_to(e) for e in ("rest.video_query", "rqs.create", "rqs.result"))


async def clean_run_requests(tmp_path: Path, source: str) -> int:
    """What one uninterrupted run of the same study costs, on an identical simulator."""
    async with running_simulator("clean", **SIM, **FAST_TASKS, clock_start=NOON) as sim:
        study = make_study(tmp_path / "clean", sim.base_url, source=source, days=DAYS)
        assert await run(sim, study) == EXIT_OK
        return counted_requests(sim)


@pytest.mark.parametrize("source", ["research-api", "rqs"])
async def test_exit_75_then_tomorrow_completes_without_paying_twice(
    tmp_path: Path, source: str
) -> None:
    baseline = await clean_run_requests(tmp_path, source)
    async with running_simulator("clean", **SIM, **FAST_TASKS, clock_start=NOON) as sim:
        study = make_study(
            tmp_path, sim.base_url, source=source, days=DAYS, daily_requests=5, on_exhausted="exit"
        )
        codes = []
        for _ in range(10):
            code = await run(sim, study)
            codes.append(code)
            if code != EXIT_QUOTA:
                break
            # Whatever is committed so far is exact: a subset of the truth, each row once.
            ids = read_pyarrow(study.output_path).ids
            assert len(ids) == len(set(ids)) and set(ids) <= oracle(sim, study)
            status = status_report(study, now=sim.clock.now())
            # The day ends when what is left cannot finish a window (an RQS one needs two).
            assert status["requests_today"] <= 5 and status["requests_left_today"] <= 1
            next_midnight(sim)
        spent = counted_requests(sim)
        per_day = [d["requests"] for d in sim.ledger.snapshot()["days"].values()]
        expected = oracle(sim, study)
    assert codes[0] == EXIT_QUOTA and codes[-1] == EXIT_OK
    assert len(codes) >= baseline // 5
    assert max(per_day) <= 5  # the study's own cap held every day
    assert_equals_oracle(study, expected)
    # Exiting and resuming costs nothing extra: checkpoints keep cursors and task ids.
    assert baseline <= spent <= baseline + 1, (baseline, spent, codes)
    print(f"{source}: clean {baseline} requests, {len(codes)} quota days {spent} requests")


@pytest.mark.parametrize(
    ("source", "cap"),
    [("rqs", {"daily_requests": 4}), ("research-api", {"daily_requests": 4}),
     # RQS counts records too: the service cuts a page short at the cap, then refuses.
     ("rqs", {"daily_records": 100})],
)  # fmt: skip
async def test_the_api_saying_quota_exceeded_also_exits_75(
    tmp_path: Path, source: str, cap: dict[str, Any]
) -> None:
    # The study thinks it has plenty; the simulator's own daily cap is what runs out.
    async with running_simulator("clean", **SIM, **FAST_TASKS, **cap, clock_start=NOON) as sim:
        study = make_study(tmp_path, sim.base_url, source=source, days=DAYS, on_exhausted="exit")
        first = await run(sim, study)
        refused = sum(c[429] for c in sim.stats.responses.values())
        status = status_report(study, now=sim.clock.now())
        # Known spent: a second run the same day exits without a call the API would count
        # (refused ones included); a token and free status polls are all it sends.
        calls = counted_calls(sim)
        assert await run(sim, study) == EXIT_QUOTA
        assert counted_calls(sim) == calls
        codes = [first]
        while codes[-1] == EXIT_QUOTA and len(codes) < 12:
            next_midnight(sim)
            codes.append(await run(sim, study))
        expected = oracle(sim, study)
    assert first == EXIT_QUOTA and refused >= 1
    assert status["quota_exhausted_today"]
    assert codes[-1] == EXIT_OK
    assert_equals_oracle(study, expected)


async def _wait_then_midnight(sim: Simulator, h: Harvest, waits: list[float]) -> None:
    """Play the night: each time the run waits for the quota, move the clock past midnight."""
    with anyio.fail_after(20):
        while True:
            until = h.stats.quota_wait_until
            if until is not None and (not waits or waits[-1] != until):
                waits.append(until)
                assert until > sim.clock.now()
                sim.clock.advance(until - sim.clock.now() + 1)
            await anyio.sleep(0.02)


@pytest.mark.parametrize("who", ["study", "api"])
async def test_wait_sleeps_until_midnight_and_finishes(tmp_path: Path, who: str) -> None:
    caps: dict[str, Any] = {"daily_requests": 5}
    async with running_simulator(
        "clean", **SIM, **FAST_TASKS, **(caps if who == "api" else {}), clock_start=NOON
    ) as sim:
        study = make_study(
            tmp_path,
            sim.base_url,
            source="rqs",
            days=DAYS,
            on_exhausted="wait",
            **(caps if who == "study" else {}),
        )
        h = Harvest(study, CREDS, options(), clock=sim.clock.now)
        waits: list[float] = []
        code: list[int] = []
        day0 = sim.clock.now() // DAY
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_wait_then_midnight, sim, h, waits)

                async def go() -> None:
                    code.append(await h.run())
                    tg.cancel_scope.cancel()

                tg.start_soon(go)
        finally:
            h.state.close()
        expected = oracle(sim, study)
        days_used = sim.clock.now() // DAY - day0
    assert code == [EXIT_OK]
    assert len(waits) >= 2 and days_used == len(waits)
    # The run waited for midnight each time: every wait ended just after a 00:00 UTC.
    assert all(w % DAY <= 2 for w in waits)
    assert_equals_oracle(study, expected)


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


MIDNIGHT = 1_700_006_400  # 2023-11-15 00:00 UTC


async def _calls_across_midnight(clock: _Clock, hooks: Any, endpoint: str, gate: QuotaGate) -> None:
    """Two calls sent at 23:59:59 and answered at 00:00:01: one delivers 100 records, the other
    is refused ("quota exceeded") and waited for at `gate`, which must not wait for the next
    00:00: the quota of the day the call was sent is back already."""

    async def call(records: int) -> None:
        clock.now = MIDNIGHT - 1.0
        await hooks.reserve(endpoint)
        clock.now += 2.0  # the answer is read at 00:00:01
        hooks.settle(endpoint, ok=records > 0, records=records)

    await call(100)
    await call(0)
    with anyio.fail_after(5):
        await gate.wait(QuotaExhausted("daily quota exceeded", status=429))


async def test_a_refusal_read_after_midnight_belongs_to_the_day_its_call_was_sent(
    tmp_path: Path,
) -> None:
    """A call sent at 23:59:59 whose answer is read after 00:00: its records and its "quota
    exceeded" count for the day it was sent. The new day stays free and nobody waits for it."""
    state = SqliteState(tmp_path / "state.sqlite", daily_requests=5, daily_records=10_000)
    clock = _Clock(MIDNIGHT - 1.0)
    stats = RunStats()
    ledger = QuotaLedger(state, daily_requests=5, daily_records=10_000, clock=clock, stats=stats)
    gate = QuotaGate(ledger, clock, stats)
    try:
        await _calls_across_midnight(clock, ledger, "rqs.result", gate)
        assert (state.usage("2023-11-14").records, state.usage("2023-11-15").records) == (100, 0)
        assert state.usage("2023-11-14").exhausted and not state.usage("2023-11-15").exhausted
        assert stats.quota_wait_until is None
        await ledger.reserve("rqs.result")  # the new day takes calls
        assert state.usage("2023-11-15").requests == 1
    finally:
        state.close()


@pytest.mark.parametrize("pool", ["research", "followers"])
async def test_an_enrichment_refusal_read_after_midnight_belongs_to_the_day_its_call_was_sent(
    tmp_path: Path, pool: str
) -> None:
    """The enrichment's pools follow the same rule as the videos' ledger: a call sent at
    23:59:59 and answered after 00:00 counts, records and refusal alike, for the day it was
    sent; the new day stays free, nobody waits for it, and the other pool is untouched."""
    state = SqliteState(tmp_path / "state.sqlite", daily_requests=5, daily_records=10_000)
    es = state.enrichments(daily_requests=5, daily_records=10_000)
    clock = _Clock(MIDNIGHT - 1.0)
    stats = RunStats()
    research = QuotaLedger(state, daily_requests=5, daily_records=10_000, clock=clock, stats=stats)
    hooks = _PoolHooks(research, es, EnrichStats())
    endpoint = KINDS["followers" if pool == "followers" else "comments"].endpoint
    ledger, other = (es.quota, state) if pool == "followers" else (state, es.quota)
    try:
        await _calls_across_midnight(clock, hooks, endpoint, hooks.gates[pool])
        assert (ledger.usage("2023-11-14").records, ledger.usage("2023-11-15").records) == (100, 0)
        assert ledger.usage("2023-11-14").exhausted and not ledger.usage("2023-11-15").exhausted
        assert not other.usage("2023-11-14").exhausted and other.usage("2023-11-14").requests == 0
        assert stats.quota_wait_until is None and stats.requests == 2
        await hooks.reserve(endpoint)  # the new day takes calls
        assert ledger.usage("2023-11-15").requests == 1
    finally:
        state.close()
