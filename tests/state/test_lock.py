from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harvester import StateError, StudyLocked
from harvester.state import SqliteState

HOLD = """
import sys, time
from harvester.state import SqliteState
s = SqliteState(sys.argv[1])
s.open_study("demo", "fp", "0.1.0")
s.lock()
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_run_is_refused_and_a_killed_run_releases(tmp_path: Path) -> None:
    path = tmp_path / "study.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        other = SqliteState(path)
        with pytest.raises(StudyLocked) as info:
            other.lock()
        assert str(info.value) == (
            f"study 'demo' is already being harvested by another process (pid {proc.pid}); "
            "this run harvests nothing"
        )
        assert isinstance(info.value, StateError) and info.value.exit_code == 99
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 5
        while True:
            try:
                other.lock()
                break
            except StateError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        other.close()
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_lock_is_reentrant_for_its_holder_and_released_on_close(tmp_path: Path) -> None:
    a = SqliteState(tmp_path / "s.sqlite")
    a.lock()
    a.lock()
    with pytest.raises(StateError):
        SqliteState(tmp_path / "s.sqlite").lock()
    a.close()
    with SqliteState(tmp_path / "s.sqlite") as b:
        b.lock()
