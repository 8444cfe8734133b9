"""One contract for every state store: SQLite (a file) and PostgreSQL (a fresh database)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from harvester import StateError, StudyChangedError
from harvester.sink import DatasetFile
from harvester.state import PlannedShard, SqliteState
from harvester.state.postgres import PostgresState

DAY = 86_400
JAN1 = 1_672_531_200
PLAN = PlannedShard("20230101-20230102", JAN1, JAN1 + 2 * DAY)
LEFT = PlannedShard("20230101T000000-20230102T000000", JAN1, JAN1 + DAY)
RIGHT = PlannedShard("20230102T000000-20230103T000000", JAN1 + DAY, JAN1 + 2 * DAY)
FP = "0123456789abcdef" * 2  # what Study.fingerprint gives: 32 hex digits

Store = SqliteState | PostgresState
Opener = Callable[..., Store]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens another connection to the same study's state (as another process would)."""
    opened: list[Store] = []
    if request.param == "sqlite":
        path = tmp_path / "study.sqlite"

        def make(**kw: Any) -> Store:
            opened.append(SqliteState(path, **kw))
            return opened[-1]
    else:
        url = request.getfixturevalue("pg_url")

        def make(**kw: Any) -> Store:
            opened.append(PostgresState(url, study="demo", **kw))
            return opened[-1]

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def state(opener: Opener) -> Store:
    s = opener()
    s.open_study("demo", FP, "0.1.0")
    s.add_plan_shards([PLAN])
    return s


def stored_text(store: Store, tmp_path: Path) -> bytes:
    """Everything the store holds, as bytes to search."""
    if isinstance(store, SqliteState):
        return b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    with psycopg.connect(store.url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'harvester'"
        ).fetchall()
        return "".join(
            str(conn.execute(f"SELECT t::text FROM harvester.{t} t").fetchall()) for (t,) in tables
        ).encode()


def test_a_changed_study_is_refused_unless_replanned(state: Store, opener: Opener) -> None:
    state.close()
    again = opener()
    again.open_study("demo", FP, "0.1.0")  # same study: fine
    with pytest.raises(StudyChangedError, match="--replan") as info:
        again.open_study("demo", "other", "0.1.0")
    assert "\n" not in str(info.value)
    assert again.shards()  # nothing was lost by the refusal
    again.reserve("2023-01-01")
    again.open_study("demo", "other", "0.1.0", replan=True)
    assert again.shards() == [] and again.usage("2023-01-01").requests == 1


def test_planning_is_idempotent(state: Store) -> None:
    assert state.add_plan_shards([PLAN, RIGHT]) == 1
    assert [s.key for s in state.shards()] == [PLAN.key, RIGHT.key]
    with pytest.raises(StateError, match="another window"):
        state.add_plan_shards([PlannedShard(PLAN.key, JAN1, JAN1 + DAY)])


def test_split_is_atomic(state: Store) -> None:
    bad = [LEFT, PlannedShard("x", JAN1 + DAY + 1, JAN1 + 2 * DAY)]
    with pytest.raises(StateError, match="tile"):
        state.split(PLAN.key, bad)
    clash = [LEFT, PlannedShard(PLAN.key, JAN1 + DAY, JAN1 + 2 * DAY)]  # key exists already
    with pytest.raises(StateError):
        state.split(PLAN.key, clash)
    assert [s.key for s in state.shards()] == [PLAN.key]
    assert state.shard(PLAN.key).status == "pending"
    state.start_leaf(PLAN.key)
    state.checkpoint_page(PLAN.key, segment=f"{PLAN.key}/000000.arrow", rows=3, cursor=100)
    dropped = state.split(PLAN.key, [RIGHT, LEFT])
    assert dropped == [f"{PLAN.key}/000000.arrow"] and state.known_segments() == set()
    parent = state.shard(PLAN.key)
    assert (parent.status, parent.records, parent.cursor) == ("split", 0, None)
    kids = state.shards(plan_key=PLAN.key)[1:]
    assert [(k.key, k.parent_key, k.status) for k in kids] == [
        (LEFT.key, PLAN.key, "pending"), (RIGHT.key, PLAN.key, "pending"),
    ]  # fmt: skip


def test_a_window_splits_into_its_sub_queries(state: Store) -> None:
    """The sub-queries of a window (one per value of an IN list) each cover its whole window;
    a sub-query's time halves keep its suffix and tile its window as any split does."""
    nl, be = (
        PlannedShard(f"{PLAN.key}_q{i}_{v}", PLAN.start, PLAN.end)
        for i, v in ((0, "NL"), (1, "BE"))
    )
    with pytest.raises(StateError, match="tile"):  # a sub-query alone leaves the others out
        state.split(PLAN.key, [nl])
    with pytest.raises(StateError, match="tile"):  # the same sub-query twice
        state.split(PLAN.key, [nl, PlannedShard(nl.key, PLAN.start, PLAN.end)])
    with pytest.raises(StateError, match="tile"):  # whole windows and halves mixed
        state.split(PLAN.key, [nl, LEFT])
    assert state.split(PLAN.key, [nl, be]) == []
    halves = [PlannedShard(w.key + "_q1_BE", w.start, w.end) for w in (LEFT, RIGHT)]
    state.split(be.key, halves)
    leaves = state.shards(status="pending")
    assert sorted(s.key for s in leaves) == sorted([nl.key, *(h.key for h in halves)])
    assert {s.plan_key for s in leaves} == {PLAN.key}


def test_restarts_are_counted_per_leaf_and_reason_across_days(state: Store, opener: Opener) -> None:
    assert state.record_restart(PLAN.key, "search_id_invalid", "2023-01-05") == 1
    assert state.record_restart(PLAN.key, "task_expired", "2023-01-05") == 1
    state.close()
    again = opener()  # the record outlives the run (and the connection) that made it
    again.open_study("demo", FP, "0.1.0")
    assert again.record_restart(PLAN.key, "search_id_invalid", "2023-01-06") == 2
    assert again.record_restart(PLAN.key, "search_id_invalid", "2023-01-06") == 3
    assert [(r.reason, r.day, r.count) for r in again.restarts()] == [
        ("search_id_invalid", "2023-01-05", 1), ("task_expired", "2023-01-05", 1),
        ("search_id_invalid", "2023-01-06", 2),
    ]  # fmt: skip
    with pytest.raises(StateError):
        again.record_restart("no-such-leaf", "search_id_invalid", "2023-01-06")
    again.open_study("demo", "other", "0.1.0", replan=True)  # a new plan: no history
    assert again.restarts() == []


def test_checkpoint_is_all_or_nothing(state: Store) -> None:
    state.start_leaf(PLAN.key)
    state.checkpoint_page(PLAN.key, segment="p/000000.arrow", rows=10, cursor=100, search_id="s1")
    state.checkpoint_page(PLAN.key, segment=None, rows=0, cursor=200)
    with pytest.raises(StateError):  # the same segment twice: the whole page is refused
        state.checkpoint_page(PLAN.key, segment="p/000000.arrow", rows=5, cursor=300)
    leaf = state.shard(PLAN.key)
    assert (leaf.cursor, leaf.records, leaf.pages, leaf.search_id) == (200, 10, 2, "s1")
    assert [s.path for s in state.segments(leaf_key=PLAN.key)] == ["p/000000.arrow"]


def test_rollback_on_any_error_inside_a_transaction(state: Store) -> None:
    with pytest.raises(RuntimeError), state._tx() as db:
        db.execute("UPDATE shards SET records = 99")
        raise RuntimeError("crash in the middle")
    assert state.shard(PLAN.key).records == 0


def test_leaf_lifecycle_and_errors(state: Store) -> None:
    with pytest.raises(StateError):
        state.checkpoint_page(PLAN.key, segment=None, rows=0, cursor=1)  # not running
    state.start_leaf(PLAN.key)
    with pytest.raises(StateError):
        state.start_leaf(PLAN.key)  # running already
    state.record_error("5xx", PLAN.key, "Server Internal Error")
    state.park(PLAN.key, "5xx", "persistent failures")
    leaf = state.shard(PLAN.key)
    assert (leaf.status, leaf.attempts, leaf.error_kind) == ("parked", 2, "5xx")
    assert not state.plan_ready(PLAN.key)
    with pytest.raises(StateError, match="unfinished"):
        state.commit_plan_shard(PLAN.key, [])
    assert state.retry_parked() == 1
    state.start_leaf(PLAN.key)
    state.lock()  # the only run: every running leaf is a dead run's
    assert state.reset_running() == 1  # a crashed run's leaf is pending again, cursor kept
    state.start_leaf(PLAN.key)
    state.requeue_leaf(PLAN.key)
    state.start_leaf(PLAN.key)
    state.mark_done(PLAN.key)
    assert state.plan_ready(PLAN.key)
    assert state.status().errors == {"5xx": 2}


def test_commit_records_files_and_forgets_segments(state: Store) -> None:
    state.split(PLAN.key, [LEFT, RIGHT])
    for leaf in (LEFT, RIGHT):
        state.start_leaf(leaf.key)
        state.checkpoint_page(leaf.key, segment=f"{leaf.key}/000000.arrow", rows=2, cursor=None)
        state.mark_done(leaf.key)
    assert [s.leaf_key for s in state.segments(plan_key=PLAN.key)] == [LEFT.key, RIGHT.key]
    files = [
        DatasetFile(f"create_date=2023-01-0{d}/{PLAN.key}.parquet", f"d{d}", 2) for d in (1, 2)
    ]
    leaves = state.commit_plan_shard(PLAN.key, files)
    assert leaves == [PLAN.key, LEFT.key, RIGHT.key]
    assert state.known_segments() == set() and state.known_files() == {f.path for f in files}
    assert not state.plan_ready(PLAN.key)
    assert state.committed_costs() == [(PLAN.key, 4, 2)]  # the leaves' records and pages
    state.commit_plan_shard(PLAN.key, files[:1])  # re-commit replaces
    assert state.known_files() == {files[0].path}
    assert [f.path for f in state.files("d1")] == [files[0].path] and state.files("d2") == []
    summary = state.status()
    assert summary.committed_plan_shards == 1 and summary.dataset_rows == 2
    assert summary.shards == {"split": 1, "done": 2} and summary.records == 4


def test_compaction_bookkeeping(state: Store) -> None:
    state.start_leaf(PLAN.key)
    state.mark_done(PLAN.key)
    state.commit_plan_shard(PLAN.key, [DatasetFile("m=1/a.parquet", "m=1", 2)])
    with pytest.raises(StateError, match="cover"):
        state.begin_compaction("m=1", "m=1/c.parquet", 2, ["m=1/b.parquet"])
    state.begin_compaction("m=1", "m=1/c.parquet", 2, ["m=1/a.parquet"])
    assert state.known_files() == {"m=1/a.parquet", "m=1/c.parquet"}
    assert [c.new_path for c in state.pending_compactions()] == ["m=1/c.parquet"]
    state.finish_compaction("m=1")
    assert state.known_files() == {"m=1/c.parquet"} and state.pending_compactions() == []
    with pytest.raises(StateError, match="no compaction"):
        state.finish_compaction("m=1")
    state.begin_compaction("m=1", "m=1/d.parquet", 2, ["m=1/c.parquet"])
    state.abort_compaction("m=1")
    assert state.known_files() == {"m=1/c.parquet"}


def test_quota_reservations_hold_across_connections(opener: Opener) -> None:
    stores = [opener(daily_requests=50) for _ in range(2)]
    stores[0].open_study("demo", FP, "0.1.0")
    granted = []

    def worker(s: Store) -> None:
        granted.append(sum(s.reserve("2023-01-01") for _ in range(40)))

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 50 and stores[0].usage("2023-01-01").requests == 50
    stores[1].settle("2023-01-01", records=700)
    stores[0].release("2023-01-01")
    assert stores[0].usage("2023-01-01").records == 700
    assert stores[1].usage("2023-01-01").requests == 49
    assert stores[0].reserve("2023-01-02", 3, cap=3) and not stores[0].reserve("2023-01-02", cap=3)
    stores[0].exhaust("2023-01-03")
    assert not stores[1].reserve("2023-01-03") and stores[1].usage("2023-01-03").exhausted
    capped = opener(daily_records=700)
    assert not capped.reserve("2023-01-01") and capped.reserve("2023-01-04")
    by_worker = capped.usage_by_worker("2023-01-01")
    assert {u.study for u in by_worker} == {"demo"}
    assert (sum(u.requests for u in by_worker), sum(u.records for u in by_worker)) == (49, 700)
    assert capped.usage_by_worker("2023-02-01") == []
    by_study = [(u.day, u.study, u.requests, u.records) for u in capped.usage_by_study()]
    assert by_study == [
        ("2023-01-01", "demo", 49, 700),
        ("2023-01-02", "demo", 3, 0),
        ("2023-01-04", "demo", 1, 0),
    ]


def test_status_on_50000_shards(opener: Opener) -> None:
    s = opener()
    s.open_study("demo", FP, "0.1.0")
    s.add_plan_shards(PlannedShard(f"k{i:05d}", i * DAY, (i + 1) * DAY) for i in range(50_000))
    s.start_leaf("k00007")
    summary = s.status("2023-01-01")
    assert summary.plan_shards == 50_000 and summary.shards == {"pending": 49_999, "running": 1}


def test_no_secret_is_ever_stored(tmp_path: Path, state: Store) -> None:
    secret = "clt.fake-token-7f3a9c"
    state.start_leaf(PLAN.key)
    state.checkpoint_page(PLAN.key, segment="s/000000.arrow", rows=1, cursor=1, search_id="42")
    state.record_error("auth", PLAN.key, "invalid_client (HTTP 401)")
    state.reserve("2023-01-01")
    blobs = stored_text(state, tmp_path)
    assert b"s/000000.arrow" in blobs  # the dump does see what was stored
    assert secret.encode() not in blobs and b"client_secret" not in blobs


def test_exact_filter_drops_are_counted_per_leaf_and_reset_by_a_split(
    state: Store,
) -> None:
    state.start_leaf(PLAN.key)
    state.checkpoint_page(PLAN.key, segment=None, rows=0, cursor=100, filtered=4)
    state.checkpoint_page(PLAN.key, segment="p1.arrow", rows=2, cursor=200, filtered=3)
    assert state.shard(PLAN.key).filtered == 7 and state.status().filtered == 7
    state.split(PLAN.key, [LEFT, RIGHT])  # the children fetch (and count) those pages again
    assert state.shard(PLAN.key).filtered == 0 and state.status().filtered == 0
    state.start_leaf(LEFT.key)
    state.checkpoint_page(LEFT.key, segment=None, rows=0, cursor=100, filtered=2)
    assert state.status().filtered == 2


def _harvest(state: Store, at: float) -> list[DatasetFile]:
    state.split(PLAN.key, [LEFT, RIGHT])
    for leaf in (LEFT, RIGHT):
        state.start_leaf(leaf.key)
        state.checkpoint_page(leaf.key, segment=f"{leaf.key}/000000.arrow", rows=3, cursor=None)
        state.mark_done(leaf.key)
    files = [
        DatasetFile(f"create_date=2023-01-0{d}/{PLAN.key}.parquet", f"d{d}", 3) for d in (1, 2)
    ]
    state.commit_plan_shard(PLAN.key, files, at=at)
    return files


def test_a_refresh_reopens_a_window_and_keeps_its_files_until_the_new_commit(
    state: Store,
) -> None:
    files = _harvest(state, at=JAN1 + 3 * DAY)
    assert state.shard(PLAN.key).committed_at == JAN1 + 3 * DAY  # the run's clock, not now
    assert state.reopen_plan_shard(PLAN.key) == []
    reopened = state.shards()
    assert [(s.key, s.status, s.records, s.pages) for s in reopened] == [
        (PLAN.key, "pending", 0, 0)
    ]
    assert reopened[0].committed_at is None
    # The earlier harvest stays readable (known files) and counted in its history.
    assert state.known_files() == {f.path for f in files}
    assert state.plan_ready(PLAN.key) is False
    assert state.reopen_plan_shard(PLAN.key) == []  # already open: nothing to do
    state.start_leaf(PLAN.key)
    state.checkpoint_page(PLAN.key, segment=f"{PLAN.key}/000000.arrow", rows=7, cursor=None)
    state.mark_done(PLAN.key)
    assert state.plan_ready(PLAN.key)
    state.commit_plan_shard(PLAN.key, files[:1], at=JAN1 + 4 * DAY)
    assert state.known_files() == {files[0].path}
    harvests = [(h.plan_key, h.committed_at, h.rows) for h in state.window_harvests()]
    assert harvests == [(PLAN.key, JAN1 + 3 * DAY, 6), (PLAN.key, JAN1 + 4 * DAY, 7)]


def test_a_completed_short_window_takes_over_the_files_and_history(state: Store) -> None:
    files = _harvest(state, at=JAN1 + 2 * DAY)
    full = PlannedShard("20230101-20230104", JAN1, JAN1 + 3 * DAY)
    with pytest.raises(StateError, match="does not complete"):
        state.supersede_plan_shard(
            PLAN.key, PlannedShard("20230102-20230104", JAN1 + DAY, JAN1 + 3 * DAY)
        )
    assert state.supersede_plan_shard(PLAN.key, full) == []
    assert [(s.key, s.status) for s in state.shards()] == [(full.key, "pending")]
    assert {f.plan_key for f in state.files()} == {full.key}
    assert state.known_files() == {f.path for f in files}
    assert [h.plan_key for h in state.window_harvests()] == [full.key]


def test_a_worker_takes_the_study_alone_again_only_when_no_other_is_at_work(
    opener: Opener,
) -> None:
    """The end of a run: alone again (what is left in the staging area is nobody's) only when
    no other worker holds the study; the single SQLite runner always is."""
    first = opener()
    first.lock()
    first.open_to_others()
    if isinstance(first, SqliteState):
        assert first.take_alone()
        return
    assert not first.alone
    second = opener()
    second.lock()  # joins: shares the lock
    assert not first.take_alone() and not second.take_alone()
    second.close()  # its connection goes, and its share of the lock with it
    assert first.take_alone() and first.alone
    third = opener(join_wait=0.3)
    with pytest.raises(StateError, match="stays locked"):
        third.lock()  # a worker starting meanwhile waits for the study
