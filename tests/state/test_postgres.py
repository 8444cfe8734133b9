"""What only the PostgreSQL store does: URL rules, migrations, the advisory run lock, leases
and a pool's shared ledger. The shared behaviour is in test_contract.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from harvester import StateError
from harvester.state import LeaseLost, PlannedShard
from harvester.state._schema import SCHEMA_VERSION
from harvester.state.postgres import PG_SCHEMA, PostgresState
from tests.state._schemas import postgres_back_to

pytestmark = pytest.mark.postgres

DAY = 86_400
JAN1 = 1_672_531_200
FP = "0123456789abcdef" * 2  # what Study.fingerprint gives: 32 hex digits
WEEK = [PlannedShard(f"2023010{d}", JAN1 + (d - 1) * DAY, JAN1 + d * DAY) for d in range(1, 8)]


def opened(url: str, study: str = "demo", **kw: object) -> PostgresState:
    s = PostgresState(url, study=study, **kw)  # type: ignore[arg-type]
    s.open_study(study, FP, "0.1.0")
    return s


def test_a_password_in_the_url_is_refused_in_one_line() -> None:
    with pytest.raises(StateError) as info:
        PostgresState("postgresql://me:hunter2@127.0.0.1:5432/lab", study="demo")
    message = str(info.value)
    assert "PGPASSWORD" in message and "hunter2" not in message and "\n" not in message


def test_an_unreachable_server_is_one_line_naming_it() -> None:
    with pytest.raises(StateError) as info:
        PostgresState("postgresql://postgres@127.0.0.1:1/lab", study="demo")
    message = str(info.value)
    assert message.startswith(
        "cannot connect to PostgreSQL at postgresql://postgres@127.0.0.1:1/lab"
    )
    assert "\n" not in message


def test_schema_is_versioned_and_a_newer_one_refused(pg_url: str) -> None:
    PostgresState(pg_url, study="demo").close()
    PostgresState(pg_url, study="demo").close()  # reopening migrates nothing
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM harvester.schema_version").fetchall() == [
            (SCHEMA_VERSION,)
        ]
        conn.execute("UPDATE harvester.schema_version SET version = 99")
    with pytest.raises(StateError, match="newer harvester"):
        PostgresState(pg_url, study="demo")


def test_a_version_1_database_is_migrated_and_keeps_its_shards(pg_url: str) -> None:
    old = opened(pg_url)
    old.add_plan_shards(WEEK[:1])
    old.close()
    postgres_back_to(pg_url, 1)  # what version 1 held
    again = opened(pg_url)
    try:
        assert again.shard(WEEK[0].key).filtered == 0
        again.start_leaf(WEEK[0].key)
        again.checkpoint_page(WEEK[0].key, segment=None, rows=0, cursor=100, filtered=9)
        assert again.status().filtered == 9
    finally:
        again.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute(f"SELECT version FROM {PG_SCHEMA}.schema_version").fetchall() == [
            (SCHEMA_VERSION,)
        ]


def test_processes_creating_the_schema_at_once_all_succeed(pg_url: str) -> None:
    script = (
        "import sys\n"
        "from harvester.state.postgres import PostgresState\n"
        "PostgresState(sys.argv[1], study=sys.argv[2]).close()\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, pg_url, f"s{i}"], stderr=subprocess.PIPE)
        for i in range(4)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors


HOLD = """
import sys, time
from harvester.state.postgres import PostgresState
s = PostgresState(sys.argv[1], study="demo")
s.lock()
print("alone" if s.alone else "joined", flush=True)
if sys.argv[2] == "open":
    s.open_to_others()
    print("open", flush=True)
time.sleep(60)
"""


def test_the_first_worker_starts_alone_then_others_join(pg_url: str) -> None:
    """Start-up recovery (reset every running leaf, sweep unknown files) needs the study to
    itself; once it is over, any number of workers share it."""
    first = subprocess.Popen(
        [sys.executable, "-c", HOLD, pg_url, "open"], stdout=subprocess.PIPE, text=True
    )
    other = PostgresState(pg_url, study="demo", join_wait=30)
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "alone"
        assert first.stdout.readline().strip() == "open"
        other.lock()
        assert not other.alone
        other.open_study("demo", "fp", "0.1.0")
        with pytest.raises(StateError, match="stop them before --replan"):
            other.open_study("demo", "changed", "0.1.0", replan=True)
        with other.exclusive("finalize:x") as mine:
            assert mine
            with PostgresState(pg_url, study="demo") as third:
                third.lock()
                with third.exclusive("finalize:x") as theirs:
                    assert not theirs  # one worker finalizes a plan shard at a time
    finally:
        first.kill()
        first.wait(10)
        other.close()


def test_a_starting_worker_holds_the_study_until_it_is_killed(pg_url: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, pg_url, "hold"], stdout=subprocess.PIPE, text=True
    )
    other = PostgresState(pg_url, study="demo", join_wait=0.5)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "alone"
        with pytest.raises(StateError) as info:
            other.lock()
        assert str(info.value) == (
            "study 'demo' stays locked by another worker's start-up or --replan; "
            "wait for it or stop it"
        )
        with PostgresState(pg_url, study="another") as elsewhere:
            elsewhere.lock()  # another study is not locked
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        other.join_wait = 10
        other.lock()  # the server dropped the dead worker's lock with its connection
        assert other.alone
    finally:
        proc.kill()
        other.close()


def test_studies_in_one_database_are_apart(pg_url: str) -> None:
    a, b = opened(pg_url, "a"), opened(pg_url, "b")
    a.add_plan_shards(WEEK)
    b.add_plan_shards(WEEK[:2])
    a.start_leaf(WEEK[0].key)
    a.checkpoint_page(WEEK[0].key, segment="x/000000.arrow", rows=5, cursor=1)
    assert len(a.shards()) == 7 and len(b.shards()) == 2
    assert b.shard(WEEK[0].key).status == "pending" and b.known_segments() == set()
    a.reserve("2023-01-01")
    assert b.usage("2023-01-01").requests == 0  # no pool: each study its own ledger
    a.close()
    b.close()


def test_a_leaf_is_leased_and_taken_over_from_its_checkpoint(pg_url: str) -> None:
    first = opened(pg_url, worker="w1", lease_seconds=0.5)
    second = opened(pg_url, worker="w2", lease_seconds=30)
    first.add_plan_shards(WEEK[:1])
    key = WEEK[0].key
    first.start_leaf(key)
    first.checkpoint_page(key, segment=f"{key}/000000.arrow", rows=100, cursor=100)
    with pytest.raises(StateError, match="running"):
        second.start_leaf(key)  # the lease is live
    assert second.claim_leaf() is None
    assert second.reset_running() == 0  # not under the exclusive lock: a live lease stays
    time.sleep(0.7)  # w1 stops renewing: it is presumed dead
    taken = second.start_leaf(key)
    assert (taken.cursor, taken.records, taken.pages) == (100, 100, 1)
    # The presumed-dead worker wakes up: none of its writes land.
    with pytest.raises(LeaseLost, match="w2"):
        first.checkpoint_page(key, segment=f"{key}/000001.arrow", rows=100, cursor=200)
    with pytest.raises(LeaseLost):
        first.mark_done(key)
    assert first.heartbeat() == [] and second.heartbeat() == [key]
    second.checkpoint_page(key, segment=f"{key}/000001.arrow", rows=50, cursor=None)
    second.mark_done(key)
    assert [s.rows for s in second.segments(leaf_key=key)] == [100, 50]
    assert second.shard(key).records == 150
    first.close()
    second.close()


def test_concurrent_claims_never_hand_out_a_leaf_twice(pg_url: str) -> None:
    setup = opened(pg_url)
    shards = [PlannedShard(f"k{i:03d}", JAN1 + i * DAY, JAN1 + (i + 1) * DAY) for i in range(60)]
    setup.add_plan_shards(shards)
    claimed: dict[str, list[str]] = {}

    def worker(name: str) -> None:
        store = opened(pg_url, worker=name)
        mine = claimed.setdefault(name, [])
        while (leaf := store.claim_leaf()) is not None:
            mine.append(leaf.key)
            store.mark_done(leaf.key)
        store.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [k for keys in claimed.values() for k in keys]
    assert sorted(everything) == [s.key for s in shards]  # each leaf exactly once
    assert setup.status().shards == {"done": 60}
    setup.close()


def test_a_pool_is_one_ledger_and_a_share_caps_one_study(pg_url: str) -> None:
    big = opened(pg_url, "big", daily_requests=100, pool="lab", share=0.5, worker="b1")
    small = opened(pg_url, "small", daily_requests=100, pool="lab", worker="s1")
    alone = opened(pg_url, "alone", daily_requests=100)
    day = "2023-01-01"
    assert sum(big.reserve(day) for _ in range(80)) == 50  # its share of the pool's 100
    assert sum(small.reserve(day) for _ in range(80)) == 50  # the rest of the pool
    assert alone.reserve(day) and alone.usage(day).requests == 1  # no pool: its own ledger
    big.settle(day, records=300)
    assert big.usage(day) == small.usage(day) and small.usage(day).requests == 100
    rows = [(u.study, u.worker, u.requests, u.records) for u in small.usage_by_worker(day)]
    assert rows == [("big", "b1", 50, 300), ("small", "s1", 50, 0)]
    big.reserve("2023-01-02")
    days = [(u.day, u.study, u.requests, u.records) for u in alone.usage_by_study()]
    assert days == [(day, "alone", 1, 0)]  # its own ledger, not the pool's
    days = [(u.day, u.study, u.requests, u.records) for u in small.usage_by_study()]
    assert days == [(day, "big", 50, 300), (day, "small", 50, 0), ("2023-01-02", "big", 1, 0)]
    recs = opened(pg_url, "recs", daily_requests=100, daily_records=1000, pool="r", share=0.3)
    assert recs.reserve(day)
    recs.settle(day, records=300)
    assert not recs.reserve(day)  # 30 % of the pool's records are this study's
    for s in (big, small, alone, recs):
        s.close()
