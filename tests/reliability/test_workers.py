"""Many workers on one study (state in PostgreSQL): leases, take-overs, no record lost or
duplicated, whichever worker dies when."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import anyio
import pytest

from harvester.orchestrator import EXIT_OK, harvest, verify_study
from harvester.simulator.app import Simulator
from harvester.simulator.config import SimulatorConfig
from harvester.simulator.testing import running_simulator
from harvester.state import utc_day
from harvester.state.postgres import PostgresState
from tests.orchestrator.conftest import sim_process, spawn_cli, wait_for  # noqa: F401
from tests.reliability._study import CREDS, SIM, dataset_ids, options, oracle, study_text
from tests.reliability._study import write_study as _write

pytestmark = pytest.mark.postgres


def _staged_files(root: Path) -> list[Path]:
    staging = root / "_staging"
    return [p for p in staging.rglob("*") if p.is_file()] if staging.exists() else []


@pytest.mark.anyio
async def test_three_workers_in_one_process_split_a_study(tmp_path: Path, pg_url: str) -> None:
    async with running_simulator("flaky", **SIM) as sim:
        _, study = _write(
            tmp_path,
            study_text(sim.base_url, days=12, window=1, state={"url": pg_url, "lease_s": 5.0}),
        )
        codes: list[int] = []

        async def worker() -> None:
            codes.append(await harvest(study, CREDS, options(), clock=sim.clock.now))

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(worker)
        expected = oracle(sim, study)
        day = utc_day(sim.clock.now())
    assert codes == [EXIT_OK] * 3
    ids = dataset_ids(study.output_path)
    assert len(ids) == len(set(ids)) and set(ids) == expected
    assert verify_study(study)["ok"] and _staged_files(study.output_path) == []
    with PostgresState(pg_url, study=study.name) as state:
        workers = [u for u in state.usage_by_worker(day) if u.requests]
        assert state.status().shards == {"done": 12}
    assert len(workers) >= 2, workers  # the leaves were shared out, not run by one worker


@pytest.mark.slow
def test_killed_workers_lose_their_leases_and_nothing_else(
    tmp_path: Path,
    pg_url: str,
    sim_process: tuple[str, subprocess.Popen[bytes]],  # noqa: F811
) -> None:
    """Three `harvester run` processes; one after another is SIGKILLed mid-leaf and started
    again; the others take its leaves up from their checkpoints once its leases run out."""
    base_url, _ = sim_process
    config, study = _write(
        tmp_path,
        study_text(
            base_url,
            days=90,
            window=1,
            timeout_s=10.0,
            state={"url": pg_url, "lease_s": 1.5},
            api={"max_concurrency": 1, "requests_per_second": 1000},
        ),
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    started = 0

    def start() -> subprocess.Popen[bytes]:
        nonlocal started
        started += 1
        log = logs / f"worker-{started}.jsonl"
        return spawn_cli(
            "run", str(config), "--no-progress", "--log-file", str(log), log=logs / f"{started}.out"
        )

    def pages(n: int) -> int:
        path = logs / f"worker-{n}.jsonl"
        text = path.read_text(errors="replace") if path.exists() else ""
        # Pages after which the leaf has more to fetch: a kill then leaves it mid-way.
        return sum(
            1
            for line in text.splitlines()
            if '"page_fetched"' in line and '"has_more":true' in line
        )

    workers = {start(): started for _ in range(3)}
    kills = 0
    for _ in range(3):
        # Kill the busiest worker right after a page of its own: a leaf is mid-way.
        victim = max((p for p in workers if p.poll() is None), key=lambda p: pages(workers[p]))
        n = workers[victim]
        before = pages(n)
        wait_for(lambda n=n, b=before, v=victim: pages(n) > b or v.poll() is not None, timeout=60)
        if victim.poll() is not None:
            break  # the study finished first
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        kills += 1
        time.sleep(0.3)
        workers[start()] = started
    for proc in workers:
        proc.wait(timeout=180)
    finals = [proc.returncode for proc in workers if proc.returncode != -signal.SIGKILL]
    assert kills >= 1 and all(code == EXIT_OK for code in finals), finals
    # A final run finds everything done.
    final = spawn_cli("run", str(config), "--no-progress", log=logs / "final.out")
    assert final.wait(timeout=120) == EXIT_OK
    events = [
        json.loads(line)
        for path in logs.glob("worker-*.jsonl")
        for line in path.read_text(errors="replace").splitlines()
        if line.startswith("{")
    ]
    takeovers = sum(1 for e in events if e.get("event") == "leaf_taken_over")
    assert takeovers >= 1  # a killed worker's leaf was taken up by another
    ids = dataset_ids(study.output_path)
    assert len(ids) == len(set(ids)), "a record was staged twice"
    # The oracle of the simulator process's corpus (same seed, same size).
    corpus = Simulator(SimulatorConfig.for_profile("clean", seed=3, videos_per_day=120))
    assert set(ids) == oracle(corpus, study)
    assert verify_study(study)["ok"] and _staged_files(study.output_path) == []
    print(f"kills {kills}, take-overs {takeovers}, records {len(ids)}, lost 0, duplicated 0")
