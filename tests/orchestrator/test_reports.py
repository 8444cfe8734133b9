"""`plan`, `status`, `verify` and `cancel` through the CLI, beside the in-process simulator."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anyio
import pytest

from harvester.orchestrator import EXIT_OK, EXIT_QUOTA, Harvest, verify_study
from harvester.simulator.testing import running_simulator
from harvester.state import SqliteState
from tests.orchestrator.conftest import (
    CREDS,
    FAST_TASKS,
    HOUR_LONG_TASKS,
    SIM,
    acli,
    assert_equals_oracle,
    cli,
    make_study,
    options,
    oracle,
    run,
)
from tests.orchestrator.test_leaf import run_until_pages

pytestmark = pytest.mark.anyio


async def test_plan_sends_no_request_and_shows_shards_and_estimates(tmp_path: Path) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        study = make_study(tmp_path, sim.base_url, source="rqs", days=10, window=2, limit=500)
        config = str(tmp_path / "study.toml")
        text = await acli("plan", config)
        as_json = await acli("plan", config, "--json")
        responses = dict(sim.stats.responses)
        assert not study.state_path.exists() and not study.output_path.exists()
        assert await run(sim, study) == EXIT_OK
        after = json.loads((await acli("plan", config, "--json")).stdout)
    assert text.returncode == 0 and as_json.returncode == 0, text.stderr
    assert responses == {}  # not even a token
    report = json.loads(as_json.stdout)
    assert report["shards"] == 5 and report["first_shards"][0] == "20220101-20220103"
    assert report["estimated_requests"] > 0 and report["estimated_records"] > 0
    assert report["estimated_tasks"] >= 5
    assert "5 windows of 2d" in text.stdout and "est. requests" in text.stdout
    # Never run: the rate is a guess, and the text says so instead of a precise figure.
    assert report["estimate_assumed"] is True and report["estimate_basis"] == "prior"
    line = next(x for x in text.stdout.splitlines() if x.startswith("est. requests"))
    assert "~" in line and "assumed 1,000 records/day" in line
    assert "the estimate updates after the first windows" in line
    # Once windows are done, the figures are what was observed: no "~", no assumption.
    assert after["estimate_basis"] == "observed" and after["estimate_assumed"] is False
    assert "~" not in after["text"] and "(observed)" in after["text"]


async def test_status_json_reports_shards_records_quota_and_errors(tmp_path: Path) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        study = make_study(
            tmp_path,
            sim.base_url,
            source="research-api",
            days=6,
            daily_requests=4,
            on_exhausted="exit",
        )
        config = str(tmp_path / "study.toml")
        fresh = json.loads((await acli("status", config, "--json")).stdout)
        sim.set_faults(http_500=0.5)  # some errors to count, all recovered by retries
        assert await run(sim, study) == EXIT_QUOTA
        result = await acli("status", config, "--json")
        text = await acli("status", config)
    assert fresh["started"] is False
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["started"] and not report["complete"]
    assert report["plan_shards"] == 6 and sum(report["shards"].values()) == 6
    assert report["shards"].get("done", 0) >= 1 and report["shards"].get("pending", 0) >= 1
    with SqliteState(study.state_path) as state:
        fetched = sum(s.records for s in state.shards())
    assert report["records"] == fetched > 0
    assert report["requests_today"] == 4 and report["requests_left_today"] == 0
    assert report["errors"].get("5xx", 0) >= 1
    assert "quota today" in text.stdout and "4/4 requests" in text.stdout
    assert "5xx" in text.stdout


async def test_verify_passes_a_good_dataset_and_fails_a_tampered_one(tmp_path: Path) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        study = make_study(tmp_path, sim.base_url, source="rqs", days=3)
        assert await run(sim, study) == EXIT_OK
        expected = oracle(sim, study)
    assert_equals_oracle(study, expected)
    config = str(tmp_path / "study.toml")
    good = cli("verify", config)
    assert good.returncode == 0 and good.stdout.startswith("ok: 3 files"), good.stdout

    root = study.output_path
    files = sorted(root.rglob("*.parquet"))
    # A stray copy: a file state does not know (readers would see its rows twice).
    stray = files[0].with_name("copy.parquet")
    shutil.copy(files[0], stray)
    bad = cli("verify", config)
    assert bad.returncode == 1 and bad.stdout.startswith("FAILED")
    assert "stray: " in bad.stdout and "copy.parquet" in bad.stdout
    stray.unlink()
    # The rest in-process: the CLI's exit code is `ok`, as above.
    assert verify_study(study)["ok"]
    # A file gone.
    saved = files[1].read_bytes()
    files[1].unlink()
    gone = verify_study(study)
    assert not gone["ok"] and gone["missing"] == [files[1].relative_to(root).as_posix()]
    # A file replaced by one with other rows.
    files[1].write_bytes(files[2].read_bytes())
    swapped = verify_study(study)
    assert not swapped["ok"] and "row count differs" in swapped["text"]
    files[1].write_bytes(saved)
    assert verify_study(study)["ok"]


async def test_cancel_cancels_the_tasks_in_flight(tmp_path: Path) -> None:
    # Tasks take an hour of the simulator's clock: a run cut short leaves them in flight.
    async with running_simulator("clean", **SIM, **HOUR_LONG_TASKS) as sim:
        study = make_study(tmp_path, sim.base_url, source="rqs", days=3, window=1)
        h = Harvest(study, CREDS, options(), clock=sim.clock.now)
        assert await run_until_pages(h, 3)  # three tasks created and checkpointed
        with SqliteState(study.state_path) as state:
            in_flight = {s.key: int(s.task_id) for s in state.shards() if s.task_id}
        assert len(in_flight) == 3
        before = {sim.tasks.status(sim.tasks.tasks[t]) for t in in_flight.values()}
        assert before <= {"Created", "Validating", "Processing"}

        result = await acli("cancel", str(tmp_path / "study.toml"))
        statuses = {sim.tasks.status(sim.tasks.tasks[t]) for t in in_flight.values()}
        with SqliteState(study.state_path) as state:
            left = [s.task_id for s in state.shards() if s.task_id]
        # The next run creates fresh tasks and completes (the clock moves the hour on for them).
        created = sim.stats.tasks_created

        async def night() -> None:
            while True:
                await anyio.sleep(0.02)
                sim.clock.advance(600)

        async with anyio.create_task_group() as tg:
            tg.start_soon(night)
            code = await run(sim, study)
            tg.cancel_scope.cancel()
        expected = oracle(sim, study)
        created_again = sim.stats.tasks_created - created
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("cancelled 3 of 3 remote task(s)")
    assert statuses == {"Cancelled"}
    assert left == []  # the leaves forgot their cancelled tasks
    assert code == EXIT_OK and created_again == 3
    assert_equals_oracle(study, expected)
