"""A study on a subprocess simulator, harvested by `harvester run` in its own process."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from tests.reliability._study import REGIONS, dataset_ids, epoch, groups, study_text
from tests.reliability.conftest import HARVESTER, SIM_ENV


def write(folder: Path, sim: Any, *, start: date, days: int, **kw: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "study.toml"
    config.write_text(study_text(sim.url, start=start, days=days, **kw))
    return config


def truth(sim: Any, start: date, days: int) -> set[int]:
    body = {
        "condition_groups": groups(REGIONS),
        "start": epoch(start),
        "end": epoch(start + timedelta(days=days)),
    }
    return {int(i) for i in sim.post("/_sim/oracle", body)["ids"]}


def start_run(config: Path, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*HARVESTER, "run", str(config), "--no-progress", "--log-file", str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=SIM_ENV,
    )


def wait_for_event(
    log: Path, event: str, proc: subprocess.Popen[str], timeout: float = 60.0
) -> bool:
    """Wait until `event` is in the run's JSON log; False if the run ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists():
            for line in log.read_text().splitlines():
                if line.strip() and json.loads(line).get("event") == event:
                    return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    raise AssertionError(f"no {event} within {timeout:g} s")


def one_error_line(stderr: str) -> str:
    """The run's final error line; everything before it is log warnings."""
    errors = [line for line in stderr.splitlines() if line.startswith("harvester: error: ")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return errors[0]


def assert_complete(
    config: Path, output: Path, expected: set[int], run: Callable[..., Any]
) -> None:
    verify = run("verify", str(config))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    got = dataset_ids(output)
    assert len(got) == len(set(got)), "duplicate rows"
    assert set(got) == expected
