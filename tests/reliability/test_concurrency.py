"""Concurrent misuse: a second run of a study already running refuses on one line; a SIGKILLed
run leaves no stuck lock; the dataset comes out whole either way."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.reliability._cli import (
    assert_complete,
    one_error_line,
    start_run,
    truth,
    wait_for_event,
    write,
)
from tests.reliability.conftest import harvester

START, DAYS = date(2022, 6, 1), 12
BUSY_DAYS = 8


@pytest.fixture(scope="module")
def slow_sim(chaos: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A clean simulator answering in about 50 ms: a run lasts long enough to be interfered with."""
    sim = chaos.Simulator(tmp_path_factory.mktemp("sim"), "clean", 9, latency=0.05)
    try:
        yield sim
    finally:
        sim.close()


@pytest.fixture(scope="module")
def slower_sim(chaos: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A quarter of a second an answer: one worker takes seconds, longer than a second run's
    start-up even on a loaded machine."""
    sim = chaos.Simulator(tmp_path_factory.mktemp("sim"), "clean", 9, latency=0.25)
    try:
        yield sim
    finally:
        sim.close()


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
        second = harvester("run", str(config), "--no-progress")
        assert first.poll() is None, "the first run ended before the second started"
        line = one_error_line(second.stderr)
        assert second.returncode == 1
        assert line == (
            f"harvester: error: study 'busy' is already being harvested by another process "
            f"(pid {first.pid}); wait for it or stop it"
        )
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
