from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from harvester import StateError, StudyChangedError
from harvester.sink import DatasetFile
from harvester.state import PlannedShard, SqliteState, fingerprint

DAY = 86_400
JAN1 = 1_672_531_200
PLAN = PlannedShard("20230101-20230102", JAN1, JAN1 + 2 * DAY)
LEFT = PlannedShard("20230101T000000-20230102T000000", JAN1, JAN1 + DAY)
RIGHT = PlannedShard("20230102T000000-20230103T000000", JAN1 + DAY, JAN1 + 2 * DAY)
FP = fingerprint({"query": "q"}, ["id"], "2023-01-01", "2023-01-02")


@pytest.fixture
def state(tmp_path: Path) -> SqliteState:
    s = SqliteState(tmp_path / "study.sqlite")
    s.open_study("demo", FP, "0.1.0")
    s.add_plan_shards([PLAN])
    return s


def test_a_changed_study_is_refused_unless_replanned(state: SqliteState) -> None:
    state.close()
    again = SqliteState(state.path)
    again.open_study("demo", FP, "0.1.0")  # same study: fine
    with pytest.raises(StudyChangedError, match="--replan") as info:
        again.open_study("demo", "other", "0.1.0")
    assert "\n" not in str(info.value)
    assert again.shards()  # nothing was lost by the refusal
    again.reserve("2023-01-01")
    again.open_study("demo", "other", "0.1.0", replan=True)
    assert again.shards() == [] and again.usage("2023-01-01").requests == 1


def test_planning_is_idempotent(state: SqliteState) -> None:
    assert state.add_plan_shards([PLAN, RIGHT]) == 1
    assert [s.key for s in state.shards()] == [PLAN.key, RIGHT.key]
    with pytest.raises(StateError, match="another window"):
        state.add_plan_shards([PlannedShard(PLAN.key, JAN1, JAN1 + DAY)])


def test_split_is_atomic(state: SqliteState) -> None:
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


def test_checkpoint_is_all_or_nothing(state: SqliteState) -> None:
    state.start_leaf(PLAN.key)
    state.checkpoint_page(PLAN.key, segment="p/000000.arrow", rows=10, cursor=100, search_id="s1")
    state.checkpoint_page(PLAN.key, segment=None, rows=0, cursor=200)
    with pytest.raises(StateError):  # the same segment twice: the whole page is refused
        state.checkpoint_page(PLAN.key, segment="p/000000.arrow", rows=5, cursor=300)
    leaf = state.shard(PLAN.key)
    assert (leaf.cursor, leaf.records, leaf.pages, leaf.search_id) == (200, 10, 2, "s1")
    assert [s.path for s in state.segments(leaf_key=PLAN.key)] == ["p/000000.arrow"]


def test_rollback_on_any_error_inside_a_transaction(state: SqliteState) -> None:
    with pytest.raises(RuntimeError), state._tx() as db:
        db.execute("UPDATE shards SET records = 99")
        raise RuntimeError("crash in the middle")
    assert state.shard(PLAN.key).records == 0


def test_leaf_lifecycle_and_errors(state: SqliteState) -> None:
    with pytest.raises(StateError):
        state.checkpoint_page(PLAN.key, segment=None, rows=0, cursor=1)  # not running
    state.start_leaf(PLAN.key)
    state.record_error("5xx", PLAN.key, "Server Internal Error")
    state.park(PLAN.key, "5xx", "persistent failures")
    leaf = state.shard(PLAN.key)
    assert (leaf.status, leaf.attempts, leaf.error_kind) == ("parked", 2, "5xx")
    assert not state.plan_ready(PLAN.key)
    with pytest.raises(StateError, match="unfinished"):
        state.commit_plan_shard(PLAN.key, [])
    assert state.retry_parked() == 1
    state.start_leaf(PLAN.key)
    assert state.reset_running() == 1  # a crashed run's leaf is pending again, cursor kept
    state.start_leaf(PLAN.key)
    state.mark_done(PLAN.key)
    assert state.plan_ready(PLAN.key)
    assert state.status().errors == {"5xx": 2}


def test_commit_records_files_and_forgets_segments(state: SqliteState) -> None:
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
    summary = state.status()
    assert summary.committed_plan_shards == 1 and summary.dataset_rows == 2
    assert summary.shards == {"split": 1, "done": 2} and summary.records == 4


def test_compaction_bookkeeping(state: SqliteState) -> None:
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


def test_quota_reservations_hold_across_connections(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    stores = [SqliteState(path, daily_requests=50) for _ in range(2)]
    granted = []

    def worker(s: SqliteState) -> None:
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
    assert stores[0].reserve("2023-01-02", 3, cap=3) and not stores[0].reserve("2023-01-02", cap=3)
    stores[0].exhaust("2023-01-03")
    assert not stores[1].reserve("2023-01-03")
    capped = SqliteState(path, daily_records=700)
    assert not capped.reserve("2023-01-01") and capped.reserve("2023-01-04")


def test_status_on_50000_shards(tmp_path: Path) -> None:
    s = SqliteState(tmp_path / "big.sqlite")
    s.open_study("big", FP, "0.1.0")
    s.add_plan_shards(PlannedShard(f"k{i:05d}", i * DAY, (i + 1) * DAY) for i in range(50_000))
    s.start_leaf("k00007")
    summary = s.status("2023-01-01")
    assert summary.plan_shards == 50_000 and summary.shards == {"pending": 49_999, "running": 1}


def test_no_secret_is_ever_stored(tmp_path: Path, state: SqliteState) -> None:
    secret = "clt.fake-token-7f3a9c"
    state.start_leaf(PLAN.key)
    state.checkpoint_page(PLAN.key, segment="s/000000.arrow", rows=1, cursor=1, search_id="42")
    state.record_error("auth", PLAN.key, "invalid_client (HTTP 401)")
    state.reserve("2023-01-01")
    state.close()
    blobs = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert secret.encode() not in blobs and b"client_secret" not in blobs


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
