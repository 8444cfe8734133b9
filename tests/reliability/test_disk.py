"""Disk trouble: a write that fails (no space, a filesystem gone read-only) stops the run with one
clear line and leaves state and dataset consistent; the next run completes and verifies.

Root ignores permission bits, so "permission lost mid-run" is a read-only remount here; where
mounting is not possible those tests skip and the injected-ENOSPC tests still run.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner

from harvester.cli import main
from harvester.sink import dataset as sink_dataset
from harvester.sink import store as sink_store
from harvester.sink._files import publish
from tests.reliability._cli import (
    assert_complete,
    one_error_line,
    start_run,
    truth,
    wait_for_event,
    write,
)
from tests.reliability.conftest import SIM_ENV, harvester, simulator_process

START, DAYS = date(2022, 8, 1), 10


@pytest.fixture(scope="module")
def slow_sim(chaos: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from simulator_process(chaos, tmp_path_factory, "clean", 13, latency=0.03)


def _consistent(chaos: ModuleType, config: Path, output: Path) -> None:
    """Whatever the failure left: readable, no duplicate, no temporary file in sight, and every
    file the state knows is there with its rows (verify ok, the harvest not yet complete)."""
    chaos.check_readable(output)
    verify = harvester("verify", str(config))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "harvest not complete" in verify.stdout


@pytest.mark.parametrize("where", ["staging", "dataset"])
def test_no_space_stops_with_one_line_and_the_next_run_completes(
    clean_sim: Any,
    chaos: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    config = write(tmp_path, clean_sim, start=START, days=DAYS, window=2, name=f"full-{where}")
    real = publish
    calls = 0

    def full(tmp: Path, final: Path) -> None:
        # The disk fills up at the third write of a staged page (`.arrow`) or of a dataset
        # file: some work is done, some is not.
        nonlocal calls
        if (final.suffix == ".arrow") == (where == "staging"):
            calls += 1
        if calls >= 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
        real(tmp, final)

    # Every file of the folder store is published through one function; the manifest too.
    monkeypatch.setattr(sink_store, "publish", full)
    monkeypatch.setattr(sink_dataset, "publish", full)
    result = CliRunner().invoke(main, ["run", str(config), "--no-progress"], env=SIM_ENV)
    monkeypatch.undo()
    assert result.exit_code == 1, result.output
    line = one_error_line(result.stderr)
    assert "No space left on device" in line and str(tmp_path) in line, line
    _consistent(chaos, config, tmp_path / "data")

    again = harvester("run", str(config), "--no-progress")
    assert again.returncode == 0, again.stderr
    assert_complete(config, tmp_path / "data", truth(clean_sim, START, DAYS), harvester)


def _mount(*args: str) -> bool:
    if os.geteuid() != 0:
        return False
    try:
        done = subprocess.run(["mount", *args], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a study's staging fills it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)):
        pytest.skip("cannot mount a filesystem here")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)


@pytest.mark.slow
def test_a_full_disk_stops_the_run_and_the_next_run_completes(
    clean_sim: Any, chaos: ModuleType, tmp_path: Path, small_disk: Path
) -> None:
    config = write(
        tmp_path / "cfg",
        clean_sim,
        start=START,
        days=DAYS,
        window=2,
        name="tmpfs",
        output=str(small_disk / "data"),
    )
    first = harvester("run", str(config), "--no-progress")
    assert first.returncode == 1, first.stderr
    line = one_error_line(first.stderr)
    assert "No space left on device" in line or "disk is full" in line, line
    _consistent(chaos, config, small_disk / "data")

    assert _mount("-o", "remount,size=64m", str(small_disk))
    again = harvester("run", str(config), "--no-progress")
    assert again.returncode == 0, again.stderr
    assert_complete(config, small_disk / "data", truth(clean_sim, START, DAYS), harvester)


@pytest.mark.slow
def test_the_dataset_turning_read_only_mid_run_stops_it_cleanly(
    slow_sim: Any, chaos: ModuleType, tmp_path: Path, small_disk: Path
) -> None:
    assert _mount("-o", "remount,size=64m", str(small_disk))
    state = tmp_path / "state" / "ro.state.sqlite"  # state stays writable; the dataset does not
    config = write(
        tmp_path / "cfg",
        slow_sim,
        start=START,
        days=DAYS,
        window=2,
        name="ro",
        output=str(small_disk / "data"),
        state={"path": str(state)},
    )
    log = tmp_path / "run.jsonl"
    run = start_run(config, log)
    try:
        assert wait_for_event(log, "page_fetched", run), "the run ended before any page"
        assert _mount("-o", "remount,ro", str(small_disk)), "could not remount read-only"
        _out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 1, err
    line = one_error_line(err)
    assert "Read-only file system" in line, line
    # A read-only dataset cannot even be tidied (nor, yet, loaded by verify, which checks
    # that output.path is writable): readers still see no partial file and no duplicate.
    chaos.check_readable(small_disk / "data")

    assert _mount("-o", "remount,rw", str(small_disk))
    again = harvester("run", str(config), "--no-progress")
    assert again.returncode == 0, again.stderr
    assert_complete(config, small_disk / "data", truth(slow_sim, START, DAYS), harvester)
