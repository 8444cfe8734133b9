"""Helpers for end-to-end harvests: a study beside the test, the oracle, readers of the dataset.

Every test here runs the real orchestrator against the real simulator over loopback HTTP, with
real SQLite state, and reads the Parquet back with pyarrow, DuckDB and Polars.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import duckdb
import polars as pl
import pyarrow.dataset as ds
import pytest
import tomli_w

from harvester.api import PollPolicy, RetryPolicy
from harvester.config import Credentials, Study, loads_study
from harvester.orchestrator import EXIT_QUOTA, RunOptions, harvest
from harvester.simulator.app import Simulator

DAY = 86_400
CREDS = Credentials("sim-client-key", "sim-client-secret")
SIM_ENV = {"TIKTOK_CLIENT_KEY": "sim-client-key", "TIKTOK_CLIENT_SECRET": "sim-client-secret"}
#: Small, fast corpora: every test's harvest takes well under a second of simulator work.
SIM: dict[str, Any] = {
    "seed": 3,
    "videos_per_day": 120,
    "latency": 0.0,
    "rate_limit_per_minute": 100_000,
}
#: RQS tasks that finish in tens of milliseconds.
FAST_TASKS: dict[str, Any] = {"rqs_created": 0.0, "rqs_validating": 0.01, "rqs_processing": 0.02}
#: Tasks that process for an hour of the simulator's clock: a run holds them in flight.
HOUR_LONG_TASKS: dict[str, Any] = {**FAST_TASKS, "rqs_processing": 3600.0}
POLL = PollPolicy(initial=0.01, maximum=0.05, timeout=30.0, busy_timeout=30.0)
RETRY = RetryPolicy(attempts=6, wait_initial=0.5, wait_jitter=0.0, wait_scale=1e-3)
FIELDS = ("id", "create_time", "username", "region_code", "hashtag_names", "view_count")
#: Seed form with a fuzzy part (hashtags): the public API is asked a superset and the
#: harvester post-filters; the oracle is always this seed query.
SEED_GROUPS: list[dict[str, Any]] = [
    {
        "operator": "and",
        "conditions": [
            {"field": "region_code", "operator": "in", "field_values": ["NL", "DE", "US", "GB"]}
        ],
    },
    {
        "operator": "not",
        "conditions": [{"field": "hashtag_names", "operator": "contains", "field_values": ["fyp"]}],
    },
]
PROVENANCE = ("_retrieved_at", "_shard", "_source")


def epoch(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def options(**kw: Any) -> RunOptions:
    kw.setdefault("retry_delay", 0.05)
    kw.setdefault("poll", POLL)
    kw.setdefault("retry", RETRY)
    return RunOptions(**kw)


def study_text(
    base_url: str,
    *,
    source: str = "rqs",
    name: str = "e2e",
    start: date = date(2022, 1, 1),
    days: int = 3,
    window: int = 1,
    limit: int | None = None,
    stage: str | None = None,
    daily_requests: int | None = None,
    daily_records: int | None = None,
    on_exhausted: str = "wait",
    partition_by: tuple[str, ...] = ("create_date",),
    fields: tuple[str, ...] = FIELDS,
    groups: list[dict[str, Any]] | None = None,
    max_concurrency: int = 3,
    output: str = "data/e2e",
    state_url: str | None = None,
    pool: str | None = None,
    share: float | None = None,
    window_fraction: float | None = None,
) -> str:
    end = start + timedelta(days=days - 1)
    study: dict[str, Any] = {
        "name": name,
        "source": source,
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
        "window": f"{window}d",
        "fields": list(fields),
        "condition_groups": groups or SEED_GROUPS,
    }
    if limit is not None:
        study["limit"] = limit
    if stage is not None:
        study["stage"] = stage
    quota: dict[str, Any] = {"on_exhausted": on_exhausted}
    if daily_requests is not None:
        quota["daily_requests"] = daily_requests
    if daily_records is not None:
        quota["daily_records"] = daily_records
    if window_fraction is not None:
        quota["window_fraction"] = window_fraction
    if pool is not None:
        quota["pool"] = pool
    if share is not None:
        quota["share"] = share
    tables: dict[str, dict[str, Any]] = {
        "study": study,
        "api": {
            "base_url": base_url,
            "max_concurrency": max_concurrency,
            "requests_per_second": 2000,
            "timeout_s": 10,
        },
        "quota": quota,
        "output": {"path": output, "partition_by": list(partition_by)},
    }
    if state_url is not None:
        tables["state"] = {"url": state_url}
    return tomli_w.dumps(tables)


def make_study(tmp_path: Path, base_url: str, **kw: Any) -> Study:
    """Write the study file (the CLI tests read it) and load it the way the CLI does."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "study.toml"
    text = study_text(base_url, **kw)
    path.write_text(text)
    return loads_study(text, path)


def oracle(sim: Simulator, study: Study) -> set[int]:
    """Ground truth for the study: the seed query over its whole period."""
    start = epoch(study.start_date)
    end = epoch(study.end_date) + DAY
    return sim.oracle(SEED_GROUPS, start, end)


async def run(sim: Simulator, study: Study, **kw: Any) -> int:
    return await harvest(study, CREDS, options(**kw), clock=sim.clock.now)


def next_midnight(sim: Simulator) -> None:
    """Move the shared clock just past the next 00:00 UTC: a fresh quota day for both sides."""
    sim.clock.advance(DAY - sim.clock.now() % DAY + 5)


async def harvest_day_by_day(sim: Simulator, study: Study, max_days: int) -> list[int]:
    """Run `study` once a quota day until it ends other than on a spent quota; the exits."""
    codes: list[int] = []
    while len(codes) < max_days:
        codes.append(await run(sim, study))
        if codes[-1] != EXIT_QUOTA:
            break
        next_midnight(sim)
    return codes


def successful_queries(sim: Simulator) -> int:
    """Video queries the simulator answered with 200."""
    return sim.stats.responses["rest.video_query"][200]


def study_period(study: Study) -> tuple[int, int]:
    """The study's dates as a half-open epoch range (for the oracle)."""
    return epoch(study.start_date), epoch(study.end_date) + DAY


def counted_requests(sim: Simulator) -> int:
    """Calls the simulator counts against the daily quota, every day summed."""
    return sum(d["requests"] for d in sim.ledger.snapshot()["days"].values())


# --------------------------------------------------------------------------- reading back


@dataclass(frozen=True)
class Readback:
    ids: list[int]
    columns: tuple[str, ...]


def read_pyarrow(root: Path) -> Readback:
    if not any(root.rglob("*.parquet")):
        return Readback([], ())  # no file yet: pyarrow would infer an empty schema
    table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
    return Readback(table.column("id").to_pylist(), tuple(table.column_names))


def read_duckdb(root: Path, partitions: tuple[str, ...] = ("create_date",)) -> Readback:
    con = duckdb.connect()
    types = ", ".join(f"'{p}': VARCHAR" for p in partitions)
    rel = con.sql(
        f"SELECT * FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true, "
        f"hive_types = {{{types}}})"
    )
    ids = [row[0] for row in rel.select("id").fetchall()]
    return Readback(ids, tuple(rel.columns))


def read_polars(root: Path) -> Readback:
    frame = pl.scan_parquet(str(root / "**" / "*.parquet"), hive_partitioning=True).collect()
    return Readback(frame["id"].to_list(), tuple(frame.columns))


def assert_equals_oracle(study: Study, expected: set[int]) -> list[int]:
    """The dataset holds exactly the oracle's ids, each once; returns the ids as read."""
    ids = read_pyarrow(study.output_path).ids
    assert len(ids) == len(set(ids)), "duplicate rows in the dataset"
    missing, extra = expected - set(ids), set(ids) - expected
    assert not missing and not extra, f"missing {len(missing)}, extra {len(extra)}"
    assert len(ids) == len(expected)
    return ids


# --------------------------------------------------------------------------- subprocesses


def cli(
    *args: str, cwd: Path | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """`harvester ARGS` in a fresh interpreter, with the simulator's credentials."""
    return subprocess.run(
        [sys.executable, "-m", "harvester.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **SIM_ENV},
        check=False,
    )


async def acli(*args: str) -> subprocess.CompletedProcess[str]:
    """`cli` off the event loop, so an in-process simulator keeps answering."""
    return await anyio.to_thread.run_sync(lambda: cli(*args))


def spawn_cli(*args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "harvester.cli", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **SIM_ENV},
        )


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def sim_process(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`harvester simulate` in its own process, on a free port, ~50 ms a call; yields
    (base_url, process)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "simulator.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harvester.cli",
                "simulate",
                "--port",
                str(port),
                "--seed",
                str(SIM["seed"]),
                "--videos-per-day",
                str(SIM["videos_per_day"]),
                # Slow enough that a test can signal a run mid-way.
                "--latency",
                "0.05",
            ],
            # A file, not a pipe: the simulator logs every task, and a full pipe would stall it.
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url: list[str] = []

        def listening() -> bool:
            for line in log.read_text(errors="replace").splitlines():
                if "listening on" in line:
                    url.append(line.split("listening on", 1)[1].strip())
                    return True
            assert proc.poll() is None, log.read_text()
            return False

        wait_for(listening, what="the simulator to listen")
        yield url[0], proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)
