"""Whole harvests with the state in PostgreSQL, and a lab's studies sharing one daily pool."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from harvester.orchestrator import EXIT_OK, EXIT_QUOTA, status_report, verify_study
from harvester.simulator.testing import running_simulator
from harvester.state import utc_day
from harvester.state.postgres import PostgresState
from tests.orchestrator.conftest import (
    FAST_TASKS,
    SIM,
    assert_equals_oracle,
    cli,
    counted_requests,
    make_study,
    oracle,
    run,
)

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


@pytest.mark.parametrize("source", ["research-api", "rqs"])
async def test_a_study_with_its_state_in_postgres_equals_the_oracle(
    tmp_path: Path, pg_url: str, source: str
) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        study = (
            make_study(
                tmp_path, sim.base_url, source=source, days=4, window=2, limit=50, state_url=pg_url
            )
            if source == "rqs"
            else make_study(
                tmp_path, sim.base_url, source=source, days=4, window=2, state_url=pg_url
            )
        )
        assert await run(sim, study) == EXIT_OK
        expected = oracle(sim, study)
        before = counted_requests(sim)
        assert await run(sim, study) == EXIT_OK  # a second run finds everything done
        assert counted_requests(sim) == before
    assert_equals_oracle(study, expected)
    assert not study.state_path.exists()  # nothing of the state went to a local file
    assert verify_study(study)["ok"]
    status = status_report(study)
    assert status["complete"] and status["dataset_rows"] == len(expected)


async def test_studies_sharing_a_pool_never_pass_its_cap_together(
    tmp_path: Path, pg_url: str
) -> None:
    cap = 24
    async with running_simulator("clean", **SIM) as sim:
        big, small = (
            make_study(
                tmp_path / name,
                sim.base_url,
                source="research-api",
                name=name,
                days=days,
                window=1,
                daily_requests=cap,
                on_exhausted="exit",
                state_url=pg_url,
                pool="our-lab",
                share=share,
            )
            for name, days, share in (("big", 30, 0.5), ("small", 30, None))
        )
        codes: dict[str, int] = {}

        async def one(study_name: str, study: object) -> None:
            codes[study_name] = await run(sim, study)  # type: ignore[arg-type]

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "big", big)
            tg.start_soon(one, "small", small)
        counted = counted_requests(sim)
        day = utc_day(sim.clock.now())
    # Each needs 30 days' pages: more than the pool's day holds, so both stop at the cap.
    assert codes == {"big": EXIT_QUOTA, "small": EXIT_QUOTA}
    assert counted <= cap  # counted at the simulator: the pool's cap held for both together
    with PostgresState(pg_url, study="big", pool="our-lab") as state:
        used = {u.study: u.requests for u in state.usage_by_worker(day)}
        assert state.usage(day).requests <= cap
    assert used["big"] <= cap // 2  # its share
    # The rest of the pool's day, less the last requests no window could be finished with
    # (a window starts only if the day can finish it, with a margin).
    assert used["small"] >= cap - used["big"] - 3 and sum(used.values()) >= counted


def test_quota_command_shows_the_pool_by_study_and_worker(tmp_path: Path, pg_url: str) -> None:
    for name in ("alpha", "beta"):
        make_study(tmp_path / name, "http://127.0.0.1:9", name=name, state_url=pg_url, pool="lab")
    day = utc_day()
    with PostgresState(pg_url, study="alpha", pool="lab", worker="host-a:1") as a:
        assert a.reserve(day, 3)
        a.settle(day, records=250)
    with PostgresState(pg_url, study="beta", pool="lab", worker="host-b:7") as b:
        assert b.reserve(day, 2)
    done = cli("quota", str(tmp_path / "alpha" / "study.toml"))
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "our-lab" not in text and "lab" in text
    assert "alpha" in text and "host-a:1" in text and "beta" in text and "host-b:7" in text
    assert "5 of 1,000 requests" in text
    as_json = cli("quota", "--json", str(tmp_path / "alpha" / "study.toml"))
    assert '"requests": 5' in as_json.stdout
