"""What only the SQLite store does; the shared behaviour is in test_contract.py."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from harvester import StateError
from harvester.state import PlannedShard, SqliteState, fingerprint

DAY = 86_400
JAN1 = 1_672_531_200
PLAN = PlannedShard("20230101-20230102", JAN1, JAN1 + 2 * DAY)
LEFT = PlannedShard("20230101T000000-20230102T000000", JAN1, JAN1 + DAY)
RIGHT = PlannedShard("20230102T000000-20230103T000000", JAN1 + DAY, JAN1 + 2 * DAY)
FP = fingerprint({"query": "q"}, ["id"], "2023-01-01", "2023-01-02")


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "new.sqlite")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StateError, match="newer"):
        SqliteState(tmp_path / "new.sqlite")


def test_two_processes_creating_the_schema_at_once_both_succeed(tmp_path: Path) -> None:
    """A `status` opening the state while the first run creates it must not break the run."""
    path = tmp_path / "race.sqlite"
    script = (
        "import sys\n"
        "from harvester.state import SqliteState\n"
        "for i in range(30):\n"
        "    p = sys.argv[1] + f'.{i}'\n"
        "    SqliteState(p).close()\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(path)], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
