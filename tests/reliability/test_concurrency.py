"""Concurrent misuse: a second run of a study already running is skipped on one line (exit 99)
without a request; a SIGKILLed run leaves no stuck lock; the dataset comes out whole either way."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.reliability._cli import (
    assert_complete,
    start_run,
    truth,
    wait_for_event,
    write,
)
from tests.reliability.conftest import harvester, simulator_process

START, DAYS = date(2022, 6, 1), 12
BUSY_DAYS = 8


@pytest.fixture(scope="module")
def slow_sim(chaos: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A clean simulator answering in about 50 ms: a run lasts long enough to be interfered with."""
    yield from simulator_process(chaos, tmp_path_factory, "clean", 9, latency=0.05)


@pytest.fixture(scope="module")
def slower_sim(chaos: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A quarter of a second an answer: one worker takes seconds, longer than a second run's
    start-up even on a loaded machine."""
    yield from simulator_process(chaos, tmp_path_factory, "clean", 9, latency=0.25)


@pytest.mark.slow
def test_a_second_run_refuses_while_the_first_goes_on(slower_sim: Any, tmp_path: Path) -> None:
    slow_sim = slower_sim
    config = write(
        tmp_path,
        slow_sim,
        start=START,
        days=BUSY_DAYS,
        window=2,
        name="busy",
        api={"max_concurrency": 1},
    )
    first = start_run(config, tmp_path / "first.jsonl")
    try:
        assert wait_for_event(tmp_path / "first.jsonl", "page_fetched", first)
        tokens = slow_sim.get("/_sim/stats")["tokens_issued"]
        started = time.monotonic()
        second = harvester(
            "run", str(config), "--no-progress", "--log-file", str(tmp_path / "second.jsonl")
        )
        took = time.monotonic() - started
        assert first.poll() is None, "the first run ended before the second started"
        # Skipped, not failed: one line, the documented code, and not a single request (not
        # even a token), long before the first run's next page would be due.
        assert second.returncode == 99, second.stderr
        assert second.stderr.splitlines()[-1] == (
            f"harvester: skipped: study 'busy' is already being harvested by another process "
            f"(pid {first.pid}); this run harvests nothing (exit 99)"
        )
        assert "Traceback" not in second.stderr and "harvester: error" not in second.stderr
        assert slow_sim.get("/_sim/stats")["tokens_issued"] == tokens
        events = [json.loads(line)["event"] for line in (tmp_path / "second.jsonl").open()]
        assert not {"shard_submitted", "page_fetched", "study_planned"} & set(events), events
        assert took < 15, f"the second run took {took:.1f} s to give up"
        # Reading beside a live run is allowed and does not disturb it.
        assert harvester("status", str(config)).returncode == 0
        assert first.wait(120) == 0, first.stderr.read() if first.stderr else ""
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        for stream in (first.stdout, first.stderr):
            if stream is not None:
                stream.close()
    assert_complete(config, tmp_path / "data", truth(slow_sim, START, BUSY_DAYS), harvester)


@pytest.mark.slow
def test_a_sigkilled_run_leaves_no_stuck_lock(slow_sim: Any, tmp_path: Path) -> None:
    config = write(tmp_path, slow_sim, start=START, days=DAYS, window=2, name="killed")
    first = start_run(config, tmp_path / "first.jsonl")
    try:
        assert wait_for_event(tmp_path / "first.jsonl", "page_fetched", first)
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(30) == -signal.SIGKILL
    finally:
        for stream in (first.stdout, first.stderr):
            if stream is not None:
                stream.close()
    # The lock file is still there, naming the dead pid; the lock itself died with it.
    assert (tmp_path / "killed.state.sqlite.lock").read_text().strip() == str(first.pid)
    again = harvester("run", str(config), "--no-progress")
    assert again.returncode == 0, again.stderr
    assert_complete(config, tmp_path / "data", truth(slow_sim, START, DAYS), harvester)
