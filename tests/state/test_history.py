"""What the state remembers over time for `harvester report`; how an older state file gets it."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from harvester.sink import DatasetFile
from harvester.state import PlannedShard, SqliteState
from harvester.state._schema import SCHEMA_VERSION
from harvester.state.postgres import PG_SCHEMA, PostgresState
from tests.state._schemas import SQLITE_V1, postgres_at_version

DAY = 86_400
JAN1 = 1_672_531_200
PLAN = PlannedShard("20230101-20230102", JAN1, JAN1 + 2 * DAY)
LEFT = PlannedShard("20230101T000000-20230102T000000", JAN1, JAN1 + DAY)
RIGHT = PlannedShard("20230102T000000-20230103T000000", JAN1 + DAY, JAN1 + 2 * DAY)
OTHER = PlannedShard("20230103-20230104", JAN1 + 2 * DAY, JAN1 + 4 * DAY)
FILE = DatasetFile("create_date=2023-01-01/a.parquet", "create_date=2023-01-01", 7)
FP = "0123456789abcdef" * 2  # what Study.fingerprint gives: 32 hex digits


Store = SqliteState | PostgresState


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A study's state in each store: the report reads the same history from both."""
    s: Store
    if request.param == "sqlite":
        s = SqliteState(tmp_path / "study.sqlite")
    else:
        s = PostgresState(request.getfixturevalue("pg_url"), study="demo")
    s.open_study("demo", FP, "0.1.0")
    s.add_plan_shards([PLAN, OTHER])
    yield s
    s.close()


def test_a_window_harvest_runs_from_its_first_leaf_to_its_commit(state: Store) -> None:
    assert state.shard(PLAN.key).started_at is None
    before = time.time()
    state.start_leaf(PLAN.key)
    started = state.shard(PLAN.key).started_at
    assert started is not None and before <= started <= time.time()
    state.split(PLAN.key, [LEFT, RIGHT])
    for leaf, rows in ((LEFT, 3), (RIGHT, 4)):
        state.start_leaf(leaf.key)
        state.checkpoint_page(leaf.key, segment=f"{leaf.key}/0.arrow", rows=rows, cursor=None)
        state.mark_done(leaf.key)
    # A leaf started again after a crash keeps its first start.
    first_left = state.shard(LEFT.key).started_at
    assert first_left is not None and first_left >= started
    assert state.window_harvests() == []
    state.commit_plan_shard(PLAN.key, [FILE])
    (h,) = state.window_harvests()
    committed = state.shard(PLAN.key).committed_at
    assert (h.plan_key, h.started_at, h.committed_at, h.rows) == (PLAN.key, started, committed, 7)
    # Committed again (a later harvest of the same window): a second row, the first one kept.
    time.sleep(0.01)
    state.commit_plan_shard(PLAN.key, [FILE])
    assert [w.plan_key for w in state.window_harvests()] == [PLAN.key, PLAN.key]


def test_errors_are_counted_per_hour_and_kind(state: Store) -> None:
    state.record_error("http_500")
    state.record_error("http_500", PLAN.key, "boom")
    state.record_error("timeout")
    hour = int(time.time() // 3600 * 3600)
    got = {(e.kind, e.count) for e in state.error_hours()}
    assert got == {("http_500", 2), ("timeout", 1)}
    assert {e.hour for e in state.error_hours()} <= {hour, hour - 3600, hour + 3600}
    assert state.status().errors == {"http_500": 2, "timeout": 1}
    # --replan forgets the errors of the old plan, by hour too; the quota ledger stays.
    state.reserve("2023-01-01")
    state.open_study("demo", "changed", "0.1.0", replan=True)
    assert state.error_hours() == [] and state.window_harvests() == []
    assert [(u.day, u.requests) for u in state.quota_days()] == [("2023-01-01", 1)]


def test_quota_days_are_the_whole_ledger_oldest_first(state: Store) -> None:
    state.reserve("2023-01-02", 3)
    state.reserve("2023-01-01")
    state.settle("2023-01-01", records=250)
    state.exhaust("2023-01-02")
    days = state.quota_days()
    assert [(u.day, u.requests, u.records, u.exhausted) for u in days] == [
        ("2023-01-01", 1, 250, False),
        ("2023-01-02", 3, 0, True),
    ]


def test_a_state_from_the_first_schema_is_migrated_and_keeps_everything(tmp_path: Path) -> None:
    """A state file an older harvester wrote (schema 1) opens, gains the history tables, and
    its committed windows appear in the harvest history at their commit time."""
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(SQLITE_V1)
    db.execute("PRAGMA user_version = 1")
    db.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [("study", "demo"), ("fingerprint", FP), ("version", "0.1.0")],
    )
    db.execute(
        "INSERT INTO shards (key, plan_key, start_ts, end_ts, status, records, pages, "
        "updated_at, committed_at) VALUES (?, ?, ?, ?, 'done', 42, 1, 100.0, 1700000000.0)",
        (PLAN.key, PLAN.key, PLAN.start, PLAN.end),
    )
    db.execute(
        "INSERT INTO shards (key, plan_key, start_ts, end_ts, status, updated_at) "
        "VALUES (?, ?, ?, ?, 'pending', 100.0)",
        (OTHER.key, OTHER.key, OTHER.start, OTHER.end),
    )
    db.execute(
        "INSERT INTO files (path, plan_key, partition, rows, committed_at) "
        "VALUES ('create_date=2023-01-01/a.parquet', ?, 'create_date=2023-01-01', 42, 1.0)",
        (PLAN.key,),
    )
    db.execute("INSERT INTO errors (kind, count) VALUES ('http_500', 5)")
    db.execute("INSERT INTO quota (day, requests, records) VALUES ('2023-11-14', 9, 42)")
    db.commit()
    db.close()

    with SqliteState(path) as s:
        s.open_study("demo", FP, "0.2.0")  # the same study: no --replan needed
        assert [x.key for x in s.shards()] == [PLAN.key, OTHER.key]
        assert s.shard(PLAN.key).started_at is None
        assert s.status().errors == {"http_500": 5} and s.error_hours() == []
        assert [(u.day, u.requests, u.records) for u in s.quota_days()] == [("2023-11-14", 9, 42)]
        (h,) = s.window_harvests()
        assert (h.plan_key, h.started_at, h.committed_at, h.rows) == (
            PLAN.key,
            None,
            1700000000.0,
            42,
        )
        # And it works as a new one does from here on.
        s.start_leaf(OTHER.key)
        s.record_error("timeout", OTHER.key, "slow")
        assert [e.kind for e in s.error_hours()] == ["timeout"]
        assert s.restarts() == [] and s.record_restart(OTHER.key, "search_id_invalid", "d") == 1
    (version,) = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()
    assert version == SCHEMA_VERSION


@pytest.mark.postgres
def test_a_postgres_state_from_the_first_schema_is_migrated(pg_url: str) -> None:
    """The same for a database an older harvester set up: its committed window appears in the
    history, nothing else is lost."""
    postgres_at_version(pg_url, 1)
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute(f"SET search_path TO {PG_SCHEMA}")
        db.execute("INSERT INTO studies VALUES ('demo', %s, '0.1.0', 1.0)", (FP,))
        db.execute(
            "INSERT INTO shards (study, key, plan_key, start_ts, end_ts, status, records, "
            "pages, updated_at, committed_at) "
            "VALUES ('demo', %s, %s, %s, %s, 'done', 42, 1, 1.0, 1700000000.0)",
            (PLAN.key, PLAN.key, PLAN.start, PLAN.end),
        )
        db.execute("INSERT INTO errors VALUES ('demo', '5xx', 5)")
    with PostgresState(pg_url, study="demo") as s:
        s.open_study("demo", FP, "0.2.0")
        (h,) = s.window_harvests()
        assert (h.plan_key, h.started_at, h.committed_at, h.rows) == (
            PLAN.key,
            None,
            1700000000.0,
            42,
        )
        assert s.status().errors == {"5xx": 5} and s.error_hours() == []
        assert s.shard(PLAN.key).started_at is None
