"""Leaves from checkpoint to done, split or parked: interrupted runs resume to the oracle, failing
windows are parked and taken up again, and files nobody recorded are removed at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from harvester import HarvesterError
from harvester.orchestrator import EXIT_OK, Harvest, staging_dir, status_report
from harvester.simulator.testing import running_simulator
from tests.orchestrator.conftest import (
    CREDS,
    FAST_TASKS,
    SIM,
    assert_equals_oracle,
    counted_requests,
    make_study,
    options,
    oracle,
    read_pyarrow,
    run,
)

pytestmark = pytest.mark.anyio


async def run_until_pages(h: Harvest, pages: int) -> bool:
    """Run `h`, cancelling it from outside right after its `pages`-th checkpoint (a crash as the
    event loop sees it: no clean stop, leaves left running). True if it was cut short."""
    checkpoint = h.state.checkpoint_page
    seen = 0
    with anyio.CancelScope() as scope:

        def counting(*args: Any, **kw: Any) -> None:
            nonlocal seen
            checkpoint(*args, **kw)
            seen += 1
            if seen >= pages:
                scope.cancel()  # lands at the run's next await, wherever that is

        h.state.checkpoint_page = counting  # type: ignore[method-assign]
        try:
            await h.run()
        finally:
            h.state.close()
    return scope.cancelled_caught


@pytest.mark.parametrize("source", ["research-api", "rqs"])
async def test_cancelled_runs_resume_to_the_oracle_without_paying_twice(
    tmp_path: Path, source: str
) -> None:
    # Enough pages that four cuts land before the end (RQS also splits: limit 50 of ~60 a day).
    kw: dict[str, Any] = (
        {"source": source, "days": 20, "window": 4}
        if source == "research-api"
        else {"source": source, "days": 10, "window": 2, "limit": 50}
    )
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        clean = make_study(tmp_path / "clean", sim.base_url, **kw)
        assert await run(sim, clean) == EXIT_OK
        baseline = counted_requests(sim)
        assert status_report(clean)["pages"] >= 16  # the cuts and what 3 workers had in flight
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        study = make_study(tmp_path, sim.base_url, **kw)
        cuts = 0
        for pages in (1, 2, 3, 2):
            h = Harvest(study, CREDS, options(), clock=sim.clock.now)
            cuts += await run_until_pages(h, pages)
            ids = read_pyarrow(study.output_path).ids
            assert len(ids) == len(set(ids)) and set(ids) <= oracle(sim, study)
        assert await run(sim, study) == EXIT_OK
        spent = counted_requests(sim)
        expected = oracle(sim, study)
    assert cuts == 4
    assert_equals_oracle(study, expected)
    # Checkpoints are per page and a paid answer outlives the cancellation: at most the one
    # page or task creation in flight per worker could be asked for again.
    assert baseline <= spent <= baseline + cuts, (baseline, spent)
    print(f"{source}: clean {baseline} requests; {cuts} cuts and a resume: {spent}")


async def test_failing_windows_are_parked_then_taken_up_with_retry_failed(tmp_path: Path) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        study = make_study(tmp_path, sim.base_url, source="research-api", days=2, window=2)
        # Every call fails (502/503), for as long as the test says: 500s alone come in bounded
        # runs, always followed by a call that goes through.
        sim.set_faults(empty_body=1.0)
        with pytest.raises(HarvesterError, match="parked"):
            await run(sim, study)
        status = status_report(study)
        # The 2-day window split into days before giving up on each of them.
        assert status["shards"].get("parked") == 2 and status["shards"].get("split") == 1
        assert {p["kind"] for p in status["parked"]} == {"5xx"}
        assert status["errors"].get("5xx", 0) >= 2 * 5  # every attempt of both days, counted
        assert "parked: 20220101-20220102 (5xx)" in status["text"]
        assert not read_pyarrow(study.output_path).ids

        sim.set_faults(empty_body=0.0)
        # Parked stays parked unless asked: a plain run does not spend quota on it.
        before = counted_requests(sim)
        with pytest.raises(HarvesterError, match="--retry-failed"):
            await run(sim, study)
        assert counted_requests(sim) == before
        assert await run(sim, study, retry_failed=True) == EXIT_OK
        expected = oracle(sim, study)
    assert_equals_oracle(study, expected)
    assert status_report(study)["shards"].get("parked", 0) == 0


async def test_a_window_the_server_fails_is_split_at_its_first_5xx(tmp_path: Path) -> None:
    # Every window of two days or more fails (a bad day, many matches); days never do.
    faults = {"window_failure": 1.0, "window_failure_prob": 1.0, "window_failure_matches": 1}
    async with running_simulator("clean", **SIM, faults=faults) as sim:
        study = make_study(tmp_path, sim.base_url, source="research-api", days=2, window=2)
        assert await run(sim, study) == EXIT_OK
        answers = sim.stats.responses["rest.video_query"]
        expected = oracle(sim, study)
    assert_equals_oracle(study, expected)
    # One failed call (paid for), not the retry policy's six, then one page a day.
    assert answers[500] == 1
    assert status_report(study)["shards"].get("split") == 1


async def test_connection_failures_never_split_a_window(tmp_path: Path) -> None:
    async with running_simulator("clean", **SIM) as sim:
        study = make_study(tmp_path, sim.base_url, source="research-api", days=2, window=2)
        sim.set_faults(connection_reset=1.0)
        with pytest.raises(HarvesterError, match="parked"):
            await run(sim, study)
        status = status_report(study)
        # A network that fails says nothing about the window: it is kept whole and parked.
        assert status["shards"].get("split", 0) == 0 and status["shards"].get("parked") == 1
        assert {p["kind"] for p in status["parked"]} == {"connection"}
        sim.set_faults(connection_reset=0.0)
        assert await run(sim, study, retry_failed=True) == EXIT_OK
        expected = oracle(sim, study)
    assert_equals_oracle(study, expected)


async def test_files_unknown_to_state_are_removed_at_start_up(tmp_path: Path) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        study = make_study(tmp_path, sim.base_url, source="rqs", days=3)
        assert await run(sim, study) == EXIT_OK
        root = study.output_path
        # What a crash can leave: a file written but never recorded, a half-renamed temporary,
        # a staged segment no checkpoint knows.
        partition = next(p for p in root.iterdir() if p.is_dir())
        stray = partition / "20220101-20220101.extra.parquet"
        stray.write_bytes(next(partition.glob("*.parquet")).read_bytes())
        hidden = partition / ".tmp-20220101.parquet"
        hidden.write_bytes(b"half a file")
        orphan_dir = root / "create_date=2030-01-01"
        orphan_dir.mkdir()
        (orphan_dir / "x.parquet").write_bytes(b"PAR1")
        staged = staging_dir(study) / "20220102-20220102" / "000009.arrow"
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.write_bytes(b"junk")
        assert len(read_pyarrow_ids_safely(root)) > len(oracle(sim, study))

        assert await run(sim, study) == EXIT_OK
        expected = oracle(sim, study)
    assert not stray.exists() and not hidden.exists() and not staged.exists()
    assert not list(orphan_dir.glob("*.parquet"))
    assert_equals_oracle(study, expected)


def read_pyarrow_ids_safely(root: Path) -> list[int]:
    """Ids of every readable file (the corrupt ones are skipped): what a reader would see."""
    import pyarrow.parquet as pq

    ids: list[int] = []
    for f in root.rglob("*.parquet"):
        try:
            ids += pq.read_table(f, columns=["id"]).column("id").to_pylist()
        except Exception:
            continue
    return ids
