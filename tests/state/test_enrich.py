"""One contract for the enrichment state in both stores (a SQLite file, a PostgreSQL database),
the leases that keep a lab's workers off each other's targets, and the followers pool's ledger."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harvester import StateError
from harvester.state import LeaseHeld, LeaseLost, SqliteState
from harvester.state.enrich import EnrichState
from harvester.state.postgres import PostgresState

FP = "0123456789abcdef" * 2
DAY = "2023-01-01"

Store = SqliteState | PostgresState
Opener = Callable[..., EnrichState]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the enrichment state of study `demo` again, as another process (or worker)."""
    stores: list[Store] = []

    def make(study: str = "demo", **kw: Any) -> EnrichState:
        store: Store
        if request.param == "sqlite":
            store = SqliteState(tmp_path / f"{study}.sqlite", **kw)
        else:
            store = PostgresState(request.getfixturevalue("pg_url"), study=study, **kw)
        store.open_study(study, FP, "0.1.0")
        stores.append(store)
        return store.enrichments(daily_requests=5, daily_records=100)

    yield make
    for s in stores:
        s.close()


@pytest.fixture
def es(opener: Opener) -> EnrichState:
    return opener()


def test_targets_are_added_once_and_keep_their_progress(es: EnrichState) -> None:
    assert not es.started()
    assert es.add_targets("users", ["b", "a"]) == 2
    es.start("users", "a")
    es.checkpoint("users", "a", segment="users/a/0.arrow", seq=0, rows=1, cursor=None)
    assert es.add_targets("users", ["a", "b", "c"]) == 1  # a known target keeps its progress
    assert es.add_targets("comments", ["a"]) == 1  # kinds are apart
    assert es.started()
    assert [(t.target, t.status, t.pages) for t in es.targets("users")] == [
        ("a", "running", 1), ("b", "pending", 0), ("c", "pending", 0),
    ]  # fmt: skip
    assert [t.target for t in es.targets("users", "pending")] == ["b", "c"]
    with pytest.raises(StateError, match="unknown users target 'zz'"):
        es.target("users", "zz")


def test_a_target_runs_to_done_and_its_replies_become_targets(es: EnrichState) -> None:
    es.add_targets("comments", ["7"])
    assert es.start("comments", "7").status == "running"
    es.checkpoint("comments", "7", segment="c/7/0.arrow", seq=0, rows=3, cursor=100)
    es.checkpoint("comments", "7", segment=None, seq=1, rows=0, cursor=200)
    with pytest.raises(StateError):  # the same segment twice: the page is refused whole
        es.checkpoint("comments", "7", segment="c/7/0.arrow", seq=2, rows=1, cursor=300)
    row = es.target("comments", "7")
    assert (row.cursor, row.pages, row.rows) == (200, 2, 3)
    es.finish("comments", "7", [("7/11", 11), ("7/12", 12)])
    replies = es.targets("comments", "pending")
    assert [(r.target, r.parent, r.comment_id) for r in replies] == [
        ("7/11", "7", 11), ("7/12", "7", 12),
    ]  # fmt: skip
    with pytest.raises(LeaseHeld, match="done"):  # finished since it was listed
        es.start("comments", "7")
    assert es.unpublished("comments") == ["7"]
    assert es.segments("comments") == [("c/7/0.arrow", "7", 3)]
    assert es.known_segments() == {"c/7/0.arrow"}
    dropped = es.publish("comments", [("d=1/p.parquet", 3)], ["7"])
    assert dropped == ["c/7/0.arrow"] and es.known_segments() == set()
    assert es.unpublished("comments") == [] and es.files("comments") == [("d=1/p.parquet", 3)]
    summary = es.summary("comments")
    assert (summary.targets, summary.outcomes, summary.rows, summary.files) == (
        {"done": 1, "pending": 2}, {"ok": 1}, 3, 1,
    )  # fmt: skip


#: 02:00 UTC on 2023-01-10.
NIGHT = 1_673_316_000
SECONDS = 86_400


def test_an_unsettled_target_is_reopened_once_a_day_with_its_replies_forgotten(
    es: EnrichState,
) -> None:
    settles = {"1": NIGHT + 5 * SECONDS, "2": NIGHT - SECONDS}
    assert es.add_targets("comments", ["1", "2", "3"], settles) == 3
    for t in ("1", "2", "3"):
        es.start("comments", t)
        es.checkpoint("comments", t, segment=f"comments/{t}-0", seq=0, rows=4, cursor=100)
    es.finish("comments", "1", [("1/7", 7)], fetched_at=NIGHT)
    es.finish("comments", "2", fetched_at=NIGHT)
    es.finish("comments", "3", fetched_at=NIGHT)
    es.start("comments", "1/7")
    es.checkpoint("comments", "1/7", segment="comments/1-7-0", seq=0, rows=2, cursor=None)
    es.finish("comments", "1/7", fetched_at=NIGHT)
    es.publish("comments", [("retrieved_date=2023-01-10/a.parquet", 14)], ["1", "1/7", "2", "3"])

    # The same UTC day: nothing is due yet.
    assert es.reopen_unsettled("comments", NIGHT + 3600) == ([], [])
    # The next night: only "1" (fetched before it settles); "2" had settled, "3" never will.
    reopened, dropped = es.reopen_unsettled("comments", NIGHT + SECONDS)
    assert (reopened, dropped) == (["1"], [])
    row = es.target("comments", "1")
    assert (row.status, row.cursor, row.pages, row.rows, row.file, row.stale) == (
        "pending", None, 0, 0, None, 1,
    )  # fmt: skip
    assert [r.target for r in es.targets("comments")] == ["1", "2", "3"]  # its reply is gone
    assert es.stale("comments") == []  # not fetched again yet
    es.start("comments", "1")
    es.finish("comments", "1", fetched_at=NIGHT + SECONDS)
    assert es.stale("comments") == ["1"]
    assert es.unpublished("comments") == ["1"]
    es.publish(
        "comments",
        [("retrieved_date=2023-01-11/b.parquet", 5), ("retrieved_date=2023-01-10/c.parquet", 8)],
        ["1"],
        replaced=["retrieved_date=2023-01-10/a.parquet"],
        refreshed=["1"],
    )
    assert es.stale("comments") == [] and es.unpublished("comments") == []
    assert es.files("comments") == [
        ("retrieved_date=2023-01-10/c.parquet", 8),
        ("retrieved_date=2023-01-11/b.parquet", 5),
    ]
    # A newer video of a known target moves its settling later, never earlier.
    es.add_targets("comments", ["2"], {"2": NIGHT + 9 * SECONDS})
    es.add_targets("comments", ["2"], {"2": NIGHT})
    assert es.target("comments", "2").settles_at == NIGHT + 9 * SECONDS


def test_a_replys_staged_pages_go_when_its_comment_is_reopened(es: EnrichState) -> None:
    es.add_targets("comments", ["1"], {"1": NIGHT + 5 * SECONDS})
    es.start("comments", "1")
    es.finish("comments", "1", [("1/7", 7)], fetched_at=NIGHT)
    es.start("comments", "1/7")
    es.checkpoint("comments", "1/7", segment="comments/1-7-0", seq=0, rows=2, cursor=5)
    assert es.reopen_unsettled("comments", NIGHT + SECONDS) == (["1"], ["comments/1-7-0"])
    assert es.known_segments() == set()


def test_refusals_failures_and_a_restart(es: EnrichState, opener: Opener) -> None:
    es.add_targets("users", ["private", "flaky", "dead"])
    es.start("users", "private")
    es.checkpoint("users", "private", segment="u/p/0.arrow", seq=0, rows=1, cursor=None)
    assert es.refuse("users", "private", "private", "account is private") == ["u/p/0.arrow"]
    es.start("users", "flaky")
    es.fail("users", "flaky", "5xx", "again", park=False)
    es.start("users", "flaky")
    es.fail("users", "flaky", "5xx", "and again", park=True)
    es.start("users", "dead")  # a run killed here leaves it running
    es.record_error("5xx")
    summary = es.summary("users")
    assert summary.targets == {"unavailable": 1, "failed": 1, "running": 1}
    assert summary.outcomes == {"private": 1, "5xx": 1}
    assert es.target("users", "flaky").attempts == 2
    assert es.retry_failed("users") == 1
    again = opener()
    again.store.lock()  # alone with the study: every running target is a dead run's
    assert again.reset_running() == 1
    assert [t.target for t in again.targets("users", "pending")] == ["dead", "flaky"]


def test_a_vce_tasks_batch_is_noted_then_done_at_once(es: EnrichState, opener: Opener) -> None:
    """A pyrqs batch: the task's id is its targets' cursor from its create (a restart finds
    it), and its targets are done together, ok with rows or empty without, the task once."""
    es.add_targets("users", ["a", "b", "c"])
    for t in ("a", "b", "c"):
        es.start("users", t)
    es.note_task("users", ["a", "b", "c"], 96001)
    again = opener()  # the run was killed: the next is alone with the study
    again.store.lock()
    assert again.reset_running() == 3  # pending again, the task remembered
    assert {(r.target, r.status, r.cursor) for r in again.targets("users")} == {
        ("a", "pending", 96001), ("b", "pending", 96001), ("c", "pending", 96001)
    }  # fmt: skip
    for t in ("a", "b", "c"):
        again.start("users", t)
    again.finish_batch(
        "users", [("a", "users/a/0.arrow", 1), ("b", None, 0), ("c", "users/c/0.arrow", 1)]
    )
    rows = {r.target: r for r in again.targets("users")}
    assert {t: (r.status, r.outcome, r.cursor, r.rows) for t, r in rows.items()} == {
        "a": ("done", "ok", None, 1), "b": ("done", "empty", None, 0), "c": ("done", "ok", None, 1)
    }  # fmt: skip
    s = again.summary("users")
    assert (s.outcomes, s.pages, s.answered) == ({"ok": 2, "empty": 1}, 1, 1)
    assert sorted(again.unpublished("users")) == ["a", "b", "c"]
    with pytest.raises(LeaseLost):  # done targets are no one's to note again
        again.note_task("users", ["a"], 96002)


def test_the_followers_pool_is_a_ledger_of_its_own(opener: Opener) -> None:
    es = opener(daily_requests=50)
    assert sum(es.quota.reserve(DAY) for _ in range(9)) == 5  # the pool's 5 a day
    es.quota.settle(DAY, records=40)
    es.quota.exhaust("2023-01-02")
    assert not es.quota.reserve("2023-01-02")
    assert es.store.usage(DAY).requests == 0  # the study's own ledger is untouched
    assert es.store.reserve(DAY)
    assert (es.quota.usage(DAY).requests, es.quota.usage(DAY).records) == (5, 40)
    other = opener()  # another connection sees the same day
    assert not other.quota.reserve(DAY)


@pytest.mark.postgres
def test_a_lab_pool_shares_its_followers_ledger_too(pg_url: str) -> None:
    stores = [
        PostgresState(pg_url, study=name, pool=pool)
        for name, pool in (("a", "lab"), ("b", "lab"), ("c", None))
    ]
    try:
        a, b, c = (s.enrichments(daily_requests=4, daily_records=100) for s in stores)
        assert sum(a.quota.reserve(DAY) for _ in range(3)) == 3
        assert sum(b.quota.reserve(DAY) for _ in range(3)) == 1  # the lab's 4 together
        assert sum(c.quota.reserve(DAY) for _ in range(3)) == 3  # no pool: its own
        assert a.quota.name == "pool:lab/followers" and stores[0].quota.name == "pool:lab"
        assert {u.study for u in a.quota.usage_by_worker(DAY)} == {"a", "b"}
    finally:
        for s in stores:
            s.close()


def _worker(pg_url: str, name: str, lease: float = 30.0) -> EnrichState:
    store = PostgresState(pg_url, study="demo", worker=name, lease_seconds=lease)
    store.open_study("demo", FP, "0.1.0")
    return store.enrichments(daily_requests=5, daily_records=100)


@pytest.mark.postgres
def test_a_target_is_leased_and_taken_over_from_its_checkpoint(pg_url: str) -> None:
    first, second = _worker(pg_url, "w1", lease=0.5), _worker(pg_url, "w2")
    try:
        first.add_targets("comments", ["7"])
        first.start("comments", "7")
        first.checkpoint("comments", "7", segment="c/7/0.arrow", seq=0, rows=2, cursor=100)
        with pytest.raises(LeaseHeld, match="w1"):
            second.start("comments", "7")  # the lease is live
        assert second.claim("comments") is None and second.running_elsewhere("comments") == 1
        assert second.reset_running() == 0  # not alone: a live lease stays
        time.sleep(0.7)  # w1 stops renewing: it is presumed dead
        assert second.running_elsewhere("comments") == 0
        taken = second.start("comments", "7")
        assert (taken.cursor, taken.pages, taken.rows) == (100, 1, 2)
        # The presumed-dead worker wakes up: none of its writes land.
        with pytest.raises(LeaseLost, match="w2"):
            first.checkpoint("comments", "7", segment="c/7/1.arrow", seq=1, rows=2, cursor=200)
        with pytest.raises(LeaseLost):
            first.finish("comments", "7")
        assert first.heartbeat() == [] and second.heartbeat() == ["7"]
        second.checkpoint("comments", "7", segment="c/7/1.arrow", seq=1, rows=1, cursor=None)
        second.finish("comments", "7")
        assert [n for _, _, n in second.segments("comments")] == [2, 1]
    finally:
        first.close()
        second.close()
        first.store.close()
        second.store.close()


@pytest.mark.postgres
def test_concurrent_claims_never_hand_out_a_target_twice(pg_url: str) -> None:
    setup = _worker(pg_url, "setup")
    setup.add_targets("users", [f"u{i:03d}" for i in range(60)])
    claimed: dict[str, list[str]] = {}

    def worker(name: str) -> None:
        es = _worker(pg_url, name)
        mine = claimed.setdefault(name, [])
        while (row := es.claim("users")) is not None:
            mine.append(row.target)
            es.finish("users", row.target)
        es.store.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = sorted(k for keys in claimed.values() for k in keys)
    assert everything == [f"u{i:03d}" for i in range(60)]  # each target exactly once
    assert setup.summary("users").targets == {"done": 60}
    setup.store.close()


#: The file an older harvester kept the enrichments' progress in, beside the state file.
_OLD_FILE = """
CREATE TABLE targets (kind TEXT NOT NULL, target TEXT NOT NULL, parent TEXT, comment_id BIGINT,
    status TEXT NOT NULL, cursor BIGINT, pages INTEGER NOT NULL DEFAULT 0,
    rows BIGINT NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, outcome TEXT,
    message TEXT, file TEXT, updated_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (kind, target));
CREATE TABLE segments (path TEXT PRIMARY KEY, kind TEXT NOT NULL, target TEXT NOT NULL,
    seq INTEGER NOT NULL, rows BIGINT NOT NULL);
CREATE TABLE files (path TEXT PRIMARY KEY, kind TEXT NOT NULL, rows BIGINT NOT NULL,
    committed_at DOUBLE PRECISION NOT NULL);
CREATE TABLE quota (day TEXT PRIMARY KEY, requests BIGINT NOT NULL DEFAULT 0,
    records BIGINT NOT NULL DEFAULT 0, exhausted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE errors (kind TEXT PRIMARY KEY, count BIGINT NOT NULL);
INSERT INTO targets VALUES ('users', 'done', NULL, NULL, 'done', NULL, 1, 1, 0, 'ok', NULL,
    'd=1/p.parquet', 1.0);
INSERT INTO targets VALUES ('comments', '7', NULL, NULL, 'running', 100, 1, 2, 0, NULL, NULL,
    NULL, 1.0);
INSERT INTO segments VALUES ('c/7/0.arrow', 'comments', '7', 0, 2);
INSERT INTO files VALUES ('d=1/p.parquet', 'users', 1, 1.0);
INSERT INTO quota VALUES ('2023-01-01', 3, 30, 0);
INSERT INTO errors VALUES ('5xx', 2);
"""


#: What the file's schema 2 added: a target's settling, its last fetch, its stale rows.
_OLD_FILE_V2 = """
ALTER TABLE targets ADD COLUMN settles_at DOUBLE PRECISION;
ALTER TABLE targets ADD COLUMN fetched_at DOUBLE PRECISION;
ALTER TABLE targets ADD COLUMN stale INTEGER NOT NULL DEFAULT 0;
UPDATE targets SET settles_at = 9.0, fetched_at = 9.5, stale = 1 WHERE target = 'done';
"""


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_harvesters_enrichment_file_is_taken_in(tmp_path: Path, version: int) -> None:
    old = tmp_path / "demo.sqlite.enrich.sqlite"
    db = sqlite3.connect(old)
    db.executescript(_OLD_FILE + (_OLD_FILE_V2 if version == 2 else ""))
    db.execute(f"PRAGMA user_version = {version}")
    db.close()
    with SqliteState(tmp_path / "demo.sqlite") as store:
        store.open_study("demo", FP, "0.1.0")
        es = store.enrichments(daily_requests=5, daily_records=100)
        assert not old.exists() and old.with_name(old.name + ".imported").exists()
        assert es.files("users") == [("d=1/p.parquet", 1)]
        done = es.target("users", "done")
        assert (done.settles_at, done.fetched_at, done.stale) == (
            (9.0, 9.5, 1) if version == 2 else (None, None, 0)
        )
        # Settled when fetched, or from before settling was kept: never refreshed.
        assert es.reopen_unsettled("users", NIGHT) == ([], [])
        leaf = es.target("comments", "7")
        assert (leaf.status, leaf.cursor, leaf.pages, leaf.rows) == ("running", 100, 1, 2)
        assert es.known_segments() == {"c/7/0.arrow"}
        assert es.quota.usage("2023-01-01").requests == 3
        assert es.quota.reserve("2023-01-01", 2) and not es.quota.reserve("2023-01-01")
        store.lock()
        assert es.reset_running() == 1  # and it works on from its checkpoint
        assert es.start("comments", "7").cursor == 100
    with SqliteState(tmp_path / "demo.sqlite") as again:  # nothing is taken in twice
        assert again.enrichments(daily_requests=5, daily_records=100).summary("users").rows == 1
