"""`harvester run` as a user's shell or scheduler drives it: a separate process, signals, exit
codes, one-line refusals. Runs against a simulator in-process (its knobs and counters at hand)
or, for the signal tests, a `harvester simulate` process of its own."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import pytest

from harvester.config import load_study
from harvester.orchestrator import status_report
from harvester.simulator.testing import running_simulator
from tests.orchestrator.conftest import (
    DAY,
    FAST_TASKS,
    HOUR_LONG_TASKS,
    SEED_GROUPS,
    SIM,
    acli,
    assert_equals_oracle,
    cli,
    counted_requests,
    epoch,
    make_study,
    oracle,
    spawn_cli,
    study_text,
    wait_for,
)

pytestmark = pytest.mark.anyio


def errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The error lines of a command's stderr (study warnings may come first)."""
    lines = result.stderr.splitlines()
    assert all(line.startswith("harvester: ") for line in lines), result.stderr
    return [line for line in lines if line.startswith("harvester: error: ")]


def pages_checkpointed(study_path: Path) -> int:
    study = load_study(study_path)
    if not study.state_path.exists():
        return 0
    try:
        return int(status_report(study)["pages"])
    except Exception:
        return 0  # the first run is still creating its tables


async def tasks_checkpointed(config: Path, count: int) -> None:
    """Wait until a run in another process has created and checkpointed `count` tasks (their
    announcement pages): nothing to wait on but the state."""
    with anyio.fail_after(30):
        while pages_checkpointed(config) < count:  # noqa: ASYNC110 - another process
            await anyio.sleep(0.02)


def remote_oracle(base_url: str, config: Path) -> set[int]:
    study = load_study(config)
    body = json.dumps(
        {
            "condition_groups": SEED_GROUPS,
            "start": epoch(study.start_date),
            "end": epoch(study.end_date) + DAY,
        }
    ).encode()
    req = urllib.request.Request(f"{base_url}/_sim/oracle", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=10) as answer:
        return {int(i) for i in json.load(answer)["ids"]}


# --------------------------------------------------------------------------- signals and kills


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_cleanly_and_a_rerun_completes(
    tmp_path: Path, sim_process: tuple[str, Any], signum: int, code: int
) -> None:
    base_url, _ = sim_process
    config = tmp_path / "study.toml"
    # Slow enough to interrupt: ~45 calls of ~50 ms each (the simulator's latency), 3 at a time.
    config.write_text(study_text(base_url, source="research-api", days=40, window=1))
    proc = spawn_cli("run", str(config), "--no-progress", log=tmp_path / "run1.out")
    wait_for(lambda: pages_checkpointed(config) >= 3, what="three pages")
    proc.send_signal(signum)
    assert proc.wait(timeout=30) == code, (tmp_path / "run1.out").read_text()
    study = load_study(config)
    status = status_report(study)
    assert not status["complete"] and status["pages"] >= 3
    assert status["shards"].get("running", 0) == 0  # a clean stop leaves no leaf running
    rerun = cli("run", str(config), "--no-progress")
    assert rerun.returncode == 0, rerun.stderr
    verified = cli("verify", str(config))
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.startswith("ok:")
    assert_equals_oracle(study, remote_oracle(base_url, config))


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_completes(tmp_path: Path, sim_process: tuple[str, Any]) -> None:
    base_url, _ = sim_process
    config = tmp_path / "study.toml"
    # 12 one-day tasks, two checkpoints each (the task's id, then its records).
    config.write_text(study_text(base_url, source="rqs", days=12, window=1))
    kills = 0
    for pages in (2, 6, 10):
        proc = spawn_cli("run", str(config), "--no-progress", log=tmp_path / f"kill{pages}.out")
        wait_for(
            lambda p=pages, run=proc: pages_checkpointed(config) >= p or run.poll() is not None,
            what=f"{pages} pages",
        )
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait(timeout=10)
    assert kills >= 2
    rerun = cli("run", str(config), "--no-progress")
    assert rerun.returncode == 0, rerun.stderr
    assert cli("verify", str(config)).returncode == 0
    study = load_study(config)
    assert_equals_oracle(study, remote_oracle(base_url, config))
    # Nothing a killed run left behind survives: no temporary or staged file.
    assert not [p for p in study.output_path.rglob(".*") if p.is_file()]


# --------------------------------------------------------------------------- refusals


async def test_a_second_run_on_the_same_study_is_refused_while_the_first_runs(
    tmp_path: Path,
) -> None:
    # Tasks that take an hour of the simulator's clock: the first run holds the study, polling.
    async with running_simulator("clean", **SIM, **HOUR_LONG_TASKS) as sim:
        study = make_study(tmp_path, sim.base_url, source="rqs", days=3, window=1)
        config = tmp_path / "study.toml"
        first = spawn_cli("run", str(config), "--no-progress", log=tmp_path / "first.out")
        try:
            await tasks_checkpointed(config, 3)
            second = await acli("run", str(config), "--no-progress")
            assert first.poll() is None, (tmp_path / "first.out").read_text()
        finally:
            first.terminate()
            code = await anyio.to_thread.run_sync(lambda: first.wait(timeout=30))
        created = sim.stats.tasks_created
        sim.clock.advance(4000)  # the hour passes: the tasks the first run created are done
        rerun = await acli("run", str(config), "--no-progress")
        expected = oracle(sim, study)
        created_again = sim.stats.tasks_created - created
    assert second.returncode == 99
    assert errors(second) == []
    last = second.stderr.splitlines()[-1]
    assert last.startswith("harvester: skipped: study 'e2e' is already being harvested"), last
    assert f"pid {first.pid}" in second.stderr
    assert code == 143
    assert rerun.returncode == 0, rerun.stderr
    assert created == 3 and created_again == 0  # the rerun picked up the same tasks
    assert_equals_oracle(study, expected)


async def test_a_changed_study_needs_replan(tmp_path: Path) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        study = make_study(tmp_path, sim.base_url, source="research-api", days=3)
        config = tmp_path / "study.toml"
        assert (await acli("run", str(config), "--no-progress")).returncode == 0
        # Another period: the data the state describes is not this study's any more.
        study = make_study(tmp_path, sim.base_url, source="research-api", days=4)
        before = counted_requests(sim)
        refused = await acli("run", str(config), "--no-progress")
        assert counted_requests(sim) == before
        replanned = await acli("run", str(config), "--no-progress", "--replan")
        expected = oracle(sim, study)
    assert refused.returncode == 2
    assert len(errors(refused)) == 1 and "--replan" in errors(refused)[0]
    assert replanned.returncode == 0, replanned.stderr
    assert_equals_oracle(study, expected)


async def test_a_foreign_output_folder_is_refused_and_left_untouched(tmp_path: Path) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        study = make_study(tmp_path, sim.base_url, source="rqs", days=2)
        study.output_path.mkdir(parents=True)
        mine = study.output_path / "thesis.parquet"
        mine.write_bytes(b"years of work")
        (study.output_path / "notes").mkdir()
        (study.output_path / "notes" / "a.txt").write_text("keep me")
        before = sorted(p.relative_to(study.output_path) for p in study.output_path.rglob("*"))
        result = await acli("run", str(tmp_path / "study.toml"), "--no-progress")
        requests = counted_requests(sim)
    assert result.returncode == 2
    assert len(errors(result)) == 1 and "not a harvester dataset" in errors(result)[0]
    assert sorted(p.relative_to(study.output_path) for p in study.output_path.rglob("*")) == before
    assert mine.read_bytes() == b"years of work"
    assert requests == 0


def test_unset_credentials_are_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "study.toml"
    config.write_text(study_text("http://127.0.0.1:9", source="rqs"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIKTOK_")}
    result = subprocess.run(
        [*cli_argv(), "run", str(config)], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 2
    assert len(errors(result)) == 1 and "TIKTOK_CLIENT_KEY" in errors(result)[0]
    assert "Traceback" not in result.stderr


def cli_argv() -> list[str]:
    import sys

    return [sys.executable, "-m", "harvester.cli"]


async def test_cancel_on_exit_cancels_remote_tasks_and_the_rerun_starts_them_afresh(
    tmp_path: Path,
) -> None:
    async with running_simulator("clean", **SIM, **HOUR_LONG_TASKS) as sim:
        study = make_study(tmp_path, sim.base_url, source="rqs", days=3, window=1)
        config = tmp_path / "study.toml"
        run = spawn_cli(
            "run", str(config), "--no-progress", "--cancel-on-exit", log=tmp_path / "run.out"
        )
        await tasks_checkpointed(config, 3)
        run.send_signal(signal.SIGINT)
        code = await anyio.to_thread.run_sync(lambda: run.wait(timeout=30))
        statuses = {sim.tasks.status(t) for t in sim.tasks.tasks.values()}
        created = sim.stats.tasks_created
        sim.clock.advance(4000)  # had they not been cancelled, these tasks would be done now

        async def night() -> None:
            while True:
                await anyio.sleep(0.05)
                sim.clock.advance(900)

        async with anyio.create_task_group() as tg:
            tg.start_soon(night)
            rerun = await acli("run", str(config), "--no-progress")
            tg.cancel_scope.cancel()
        expected = oracle(sim, study)
        created_again = sim.stats.tasks_created - created
    assert code == 130, (tmp_path / "run.out").read_text()
    assert statuses == {"Cancelled"} and created == 3
    assert rerun.returncode == 0, rerun.stderr
    assert created_again == 3  # fresh tasks for the cancelled ones, not a parked window
    assert_equals_oracle(study, expected)


async def test_exit_75_says_what_was_committed_today_and_what_is_in_flight(
    tmp_path: Path,
) -> None:
    async with running_simulator("clean", **SIM) as sim:
        make_study(
            tmp_path, sim.base_url, source="research-api", days=6, daily_requests=3,
            on_exhausted="exit",
        )  # fmt: skip
        first = await acli("run", str(tmp_path / "study.toml"), "--no-progress")
    assert first.returncode == 75, first.stderr
    summary = [line for line in first.stderr.splitlines() if "stopped: daily quota spent" in line]
    assert len(summary) == 1
    found = re.search(r"today (\d+) shard\(s\) committed, (\d+) window\(s\) in flight", summary[0])
    assert found is not None, summary[0]
    assert 1 <= int(found[1]) <= 3
