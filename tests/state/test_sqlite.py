"""What only the SQLite store does; the shared behaviour is in test_contract.py."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from harvester import StateError
from harvester.state import PlannedShard, SqliteState
from harvester.state._schema import SCHEMA_VERSION
from tests.state._schemas import SQLITE_V1

DAY = 86_400
JAN1 = 1_672_531_200
PLAN = PlannedShard("20230101-20230102", JAN1, JAN1 + 2 * DAY)
LEFT = PlannedShard("20230101T000000-20230102T000000", JAN1, JAN1 + DAY)
RIGHT = PlannedShard("20230102T000000-20230103T000000", JAN1 + DAY, JAN1 + 2 * DAY)
FP = "0123456789abcdef" * 2  # what Study.fingerprint gives: 32 hex digits


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


def _version_1_state(path: Path) -> None:
    """A state file as harvester wrote it before the exact-filter counter (schema 1)."""
    db = sqlite3.connect(path)
    db.executescript(SQLITE_V1)
    db.execute("INSERT INTO meta (key, value) VALUES ('study', 'demo'), ('fingerprint', ?)", (FP,))
    db.execute(
        "INSERT INTO shards (key, plan_key, start_ts, end_ts, status, records, pages, "
        "next_cursor, search_id, updated_at) VALUES (?, ?, ?, ?, 'running', 40, 2, 200, 's1', 0)",
        (PLAN.key, PLAN.key, PLAN.start, PLAN.end),
    )
    db.execute("INSERT INTO quota (day, requests, records) VALUES ('2023-01-01', 7, 40)")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()


def test_a_version_1_state_is_migrated_and_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _version_1_state(path)
    with SqliteState(path) as state:
        state.open_study("demo", FP, "0.2.0")  # the same study: no --replan needed
        (version,) = state._db.execute("PRAGMA user_version").fetchone()
        assert version == SCHEMA_VERSION
        leaf = state.shard(PLAN.key)
        assert (leaf.records, leaf.pages, leaf.cursor, leaf.search_id) == (40, 2, 200, "s1")
        assert leaf.filtered == 0
        assert state.usage("2023-01-01").requests == 7
        state.checkpoint_page(PLAN.key, segment="a.arrow", rows=3, cursor=300, filtered=5)
        assert state.shard(PLAN.key).filtered == 5 and state.status().filtered == 5
    with SqliteState(path) as again:  # opening a migrated file again is a no-op
        assert again.shard(PLAN.key).filtered == 5
