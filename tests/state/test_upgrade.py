"""A state the previous harvester left (schema 4: SQLite files without a study key) opens,
migrates, keeps everything it held and works on as a new one does, in both stores."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from harvester import StudyChangedError
from harvester.sink import DatasetFile
from harvester.state import PlannedShard, SqliteState
from harvester.state._schema import MIGRATIONS, SCHEMA_VERSION
from harvester.state.postgres import PG_SCHEMA, PostgresState
from tests.state._schemas import SQLITE_V1, postgres_at_version

DAY = 86_400
JAN1 = 1_672_531_200
PLAN = PlannedShard("20230101-20230102", JAN1, JAN1 + 2 * DAY)
DONE = PlannedShard("20221230-20221231", JAN1 - 2 * DAY, JAN1 - DAY)
NEXT = PlannedShard("20230103-20230104", JAN1 + 2 * DAY, JAN1 + 3 * DAY)
FP = "0123456789abcdef" * 2

Store = SqliteState | PostgresState

#: What the previous harvester held, in its own columns (SQLite's have no study key; the
#: PostgreSQL statements get it prepended).
ROWS = (
    (
        "shards (key, plan_key, start_ts, end_ts, status, records, pages, next_cursor, "
        "search_id, updated_at, started_at)",
        (PLAN.key, PLAN.key, PLAN.start, PLAN.end, "running", 40, 2, 200, "s1", 5.0, 4.0),
    ),
    (
        "shards (key, plan_key, start_ts, end_ts, status, records, pages, updated_at, "
        "committed_at)",
        (DONE.key, DONE.key, DONE.start, DONE.end, "done", 9, 1, 1.0, 2.0),
    ),
    (
        "segments (path, leaf_key, plan_key, seq, rows)",
        (f"{PLAN.key}/000000.arrow", PLAN.key, PLAN.key, 0, 40),
    ),
    (
        "files (path, plan_key, partition, rows, committed_at)",
        ("d=1/a.parquet", DONE.key, "d=1", 9, 2.0),
    ),
    ("compactions (partition, new_path, rows, old_paths)", ("d=1", "d=1/c.parquet", 9, "[]")),
    ("errors (kind, count)", ("5xx", 3)),
    ("error_hours (hour, kind, count)", (3600, "5xx", 3)),
    ("window_harvests (plan_key, started_at, committed_at, rows)", (DONE.key, 1.0, 2.0, 9)),
    ("restarts (leaf_key, reason, day, count)", (PLAN.key, "search_id_invalid", "2023-01-02", 1)),
)


def _sqlite_v4(path: Path) -> None:
    """A state file as the previous harvester wrote it: schema 1 and its migrations to 4."""
    db = sqlite3.connect(path)
    db.executescript(SQLITE_V1)
    for step in range(2, 5):
        for statement in MIGRATIONS["sqlite"][step]:
            db.execute(statement)
    db.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [("study", "demo"), ("fingerprint", FP), ("version", "0.3.0"), ("created_at", "7.5")],
    )
    for table, values in ROWS:
        marks = ", ".join("?" * len(values))
        db.execute(f"INSERT INTO {table} VALUES ({marks})", values)
    db.execute(
        "INSERT INTO quota (day, requests, records, exhausted) VALUES ('2023-01-02', 7, 40, 1)"
    )
    db.execute("PRAGMA user_version = 4")
    db.commit()
    db.close()


def _postgres_v4(url: str) -> None:
    """A database as the previous harvester set it up (schema 4), with what it held."""
    postgres_at_version(url, 4)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"SET search_path TO {PG_SCHEMA}")
        db.execute("INSERT INTO studies VALUES ('demo', %s, '0.3.0', 7.5)", (FP,))
        for table, values in ROWS:
            name, cols = table.split(" ", 1)
            marks = ", ".join(["%s"] * (len(values) + 1))
            db.execute(f"INSERT INTO {name} (study, {cols[1:]} VALUES ({marks})", ("demo", *values))
        db.execute(
            "INSERT INTO quota VALUES ('study:demo', '2023-01-02', 7, 40, TRUE)",
        )
        db.execute("INSERT INTO quota_use VALUES ('study:demo', '2023-01-02', 'demo', 'w1', 7, 40)")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def upgraded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Store
    if request.param == "sqlite":
        _sqlite_v4(tmp_path / "old.sqlite")
        s = SqliteState(tmp_path / "old.sqlite", daily_requests=10)
    else:
        url = request.getfixturevalue("pg_url")
        _postgres_v4(url)
        s = PostgresState(url, study="demo", daily_requests=10)
    yield s
    s.close()


def _version(store: Store) -> int:
    if isinstance(store, SqliteState):
        return int(sqlite3.connect(store.path).execute("PRAGMA user_version").fetchone()[0])
    with psycopg.connect(store.url) as db:
        row = db.execute(f"SELECT version FROM {PG_SCHEMA}.schema_version").fetchone()
        assert row is not None
        return int(row[0])


def test_a_previous_state_keeps_everything_it_held(upgraded: Store) -> None:
    assert _version(upgraded) == SCHEMA_VERSION
    with pytest.raises(StudyChangedError):  # the study's fingerprint came along
        upgraded.open_study("demo", "changed", "0.4.0")
    upgraded.open_study("demo", FP, "0.4.0")  # the same study: no --replan needed
    leaf = upgraded.shard(PLAN.key)
    assert (leaf.status, leaf.records, leaf.pages, leaf.cursor, leaf.search_id) == (
        "running", 40, 2, 200, "s1",
    )  # fmt: skip
    assert [s.path for s in upgraded.segments(leaf_key=PLAN.key)] == [f"{PLAN.key}/000000.arrow"]
    assert upgraded.known_files() == {"d=1/a.parquet", "d=1/c.parquet"}
    assert [c.partition for c in upgraded.pending_compactions()] == ["d=1"]
    assert upgraded.committed_costs() == [(DONE.key, 9, 1)]
    assert [(h.plan_key, h.rows) for h in upgraded.window_harvests()] == [(DONE.key, 9)]
    assert [(e.hour, e.kind, e.count) for e in upgraded.error_hours()] == [(3600, "5xx", 3)]
    assert [(r.leaf_key, r.count) for r in upgraded.restarts()] == [(PLAN.key, 1)]
    day = upgraded.usage("2023-01-02")
    assert (day.requests, day.records, day.exhausted) == (7, 40, True)
    assert [(u.study, u.requests, u.records) for u in upgraded.usage_by_worker("2023-01-02")] == [
        ("demo", 7, 40)
    ]
    summary = upgraded.status("2023-01-02")
    assert summary.errors == {"5xx": 3} and summary.shards == {"running": 1, "done": 1}
    assert summary.plan_shards == 2 and summary.committed_plan_shards == 1


def test_a_previous_state_works_on_as_a_new_one(upgraded: Store) -> None:
    upgraded.open_study("demo", FP, "0.4.0")
    upgraded.lock()
    assert upgraded.reset_running() == 1
    assert upgraded.add_plan_shards([PLAN, NEXT]) == 1
    leaf = upgraded.start_leaf(PLAN.key)
    assert leaf.cursor == 200 and leaf.started_at == 4.0  # its first start is kept
    upgraded.checkpoint_page(PLAN.key, segment=f"{PLAN.key}/000001.arrow", rows=2, cursor=None)
    upgraded.record_error("5xx", PLAN.key, "again")  # counts on into the migrated rows
    assert upgraded.record_restart(PLAN.key, "search_id_invalid", "2023-01-02") == 2
    upgraded.mark_done(PLAN.key)
    upgraded.abort_compaction("d=1")
    upgraded.commit_plan_shard(PLAN.key, [DatasetFile("d=2/b.parquet", "d=2", 42)], at=9.0)
    assert upgraded.known_segments() == set()
    assert upgraded.known_files() == {"d=1/a.parquet", "d=2/b.parquet"}
    assert upgraded.status().errors == {"5xx": 4}
    assert not upgraded.reserve("2023-01-02")  # the day the API said was spent stays spent
    assert upgraded.reserve("2023-01-03", 10) and not upgraded.reserve("2023-01-03")
    upgraded.settle("2023-01-03", records=5)
    upgraded.release("2023-01-03", 3)
    assert [(u.day, u.requests, u.records) for u in upgraded.quota_days()] == [
        ("2023-01-02", 7, 40), ("2023-01-03", 7, 5),
    ]  # fmt: skip
    upgraded.open_study("demo", "changed", "0.4.0", replan=True)  # forgets the plan, not quota
    assert upgraded.shards() == [] and upgraded.files() == [] and upgraded.restarts() == []
    assert upgraded.usage("2023-01-03").requests == 7
