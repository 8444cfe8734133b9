"""`harvester aggregate` (fact 12): only aggregate rows leave, each standing for at least K
videos; identifier and free-text columns are refused, whatever they are called."""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import date
from pathlib import Path

import anyio
import duckdb
import pyarrow.parquet as pq
import pytest

from harvester import QueryError
from harvester.aggregate import aggregate
from harvester.config import Study
from harvester.simulator.testing import running_simulator
from tests.orchestrator.conftest import DAY, FAST_TASKS, SIM, epoch, make_study, run

EVERYTHING = [
    {"operator": "and", "conditions": [
        {"field": "view_count", "operator": "gte", "field_values": ["0"]}]},
]  # fmt: skip

BY_REGION = """
-- videos per region and creation month, with their median views
SELECT region_code, create_month, count(*) AS n, median(view_count) AS median_views
FROM videos
GROUP BY ALL
ORDER BY region_code, create_month;
"""


@pytest.fixture(scope="module")
def harvested(tmp_path_factory: pytest.TempPathFactory) -> Study:
    """A small complete dataset (RQS, execution stage), harvested once for the module."""
    tmp = tmp_path_factory.mktemp("aggregate")

    async def harvest() -> Study:
        async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
            # Every video of two weeks across a month's end: rare regions make small groups.
            study = make_study(
                tmp, sim.base_url, source="rqs", days=14, window=7, start=date(2022, 1, 25),
                groups=EVERYTHING, partition_by=("create_month",), fields=(
                    "id", "create_time", "username", "region_code", "view_count",
                    "video_description",
                ),
            )  # fmt: skip
            assert await run(sim, study) == 0
            truth = sim.oracle(EVERYTHING, epoch(study.start_date), epoch(study.end_date) + DAY)
            study.config_path.with_name("truth.txt").write_text(str(len(truth)))
            return study

    return anyio.run(harvest)


def write(tmp: Path, sql: str) -> Path:
    path = tmp / "q.sql"
    path.write_text(sql)
    return path


def total(study: Study) -> int:
    return int(study.config_path.with_name("truth.txt").read_text())


def test_cli_writes_only_groups_of_at_least_k(harvested: Study, tmp_path: Path) -> None:
    out = tmp_path / "by-region.csv"
    done = subprocess.run(
        [sys.executable, "-m", "harvester.cli", "aggregate", str(harvested.config_path),
         str(write(tmp_path, BY_REGION)), "--out", str(out), "--min-group-size", "10"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert rows and list(rows[0]) == ["region_code", "create_month", "n", "median_views"]
    assert all(int(r["n"]) >= 10 for r in rows)
    # What was left out is counted: written and suppressed videos add up to the dataset.
    con = duckdb.connect()
    groups = con.execute(
        f"SELECT count(*), sum(n) FILTER (WHERE n < 10) FROM (SELECT count(*) AS n FROM "
        f"read_parquet('{harvested.output_path}/**/*.parquet', hive_partitioning = true) "
        "GROUP BY region_code, create_month)"
    ).fetchone()
    assert groups is not None
    suppressed = groups[0] - len(rows)
    assert suppressed > 0, "the example should suppress a small group"
    assert f"suppressed {suppressed} group(s) of fewer than 10 videos" in done.stdout
    assert f"({groups[1]} videos)" in done.stdout and "source: complete dataset" in done.stdout
    assert sum(int(r["n"]) for r in rows) + groups[1] == total(harvested)


def test_parquet_output_and_a_global_aggregate(harvested: Study, tmp_path: Path) -> None:
    out = tmp_path / "all.parquet"
    sql = "SELECT count(*) AS n, avg(view_count) AS mean_views FROM videos"
    report = aggregate(harvested.output_path, sql, out, min_group_size=10)
    table = pq.read_table(out)
    assert report.rows == 1 and table.column("n").to_pylist() == [total(harvested)]
    assert not list(tmp_path.glob(".*"))  # no temporary file left


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("SELECT username, count(*) AS n FROM videos GROUP BY 1", "'username' carries usernames"),
        ("SELECT id, 10 AS n FROM videos", "'id' carries video ids"),
        (
            "SELECT video_description AS d, count(*) AS n FROM videos GROUP BY 1",
            "'d' holds descriptions",
        ),
        ("SELECT lower(username) AS who, count(*) AS n FROM videos GROUP BY 1", "'who' holds"),
        ("SELECT region_code, count(*) AS videos FROM videos GROUP BY 1", "no column 'n'"),
        ("SELECT region_code, 'x' AS n FROM videos GROUP BY 1", "not a whole number"),
        ("DELETE FROM videos", "exactly one SELECT"),
        ("SELECT 1 AS n; SELECT 2 AS n", "exactly one SELECT"),
        ("SELECT nope, count(*) AS n FROM videos GROUP BY 1", "fix the SQL"),
    ],
)
def test_refusals_are_one_line_and_write_nothing(
    harvested: Study, tmp_path: Path, sql: str, says: str
) -> None:
    out = tmp_path / "out.csv"
    with pytest.raises(QueryError) as info:
        aggregate(harvested.output_path, sql, out, label="q.sql")
    assert says in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith("q.sql: ")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_cli_refusal_exits_2(harvested: Study, tmp_path: Path) -> None:
    sql = write(tmp_path, "SELECT username, count(*) AS n FROM videos GROUP BY 1")
    done = subprocess.run(
        [sys.executable, "-m", "harvester.cli", "aggregate", str(harvested.config_path),
         str(sql), "--out", str(tmp_path / "x.csv")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "individual-level output" in done.stderr


@pytest.mark.parametrize(
    ("name", "says"),
    [("out.json", "end the name in .csv or .parquet"), ("nowhere/out.csv", "does not exist")],
)
def test_bad_outputs(harvested: Study, tmp_path: Path, name: str, says: str) -> None:
    from harvester import ConfigError

    with pytest.raises(ConfigError, match=says):
        aggregate(harvested.output_path, BY_REGION, tmp_path / name)
    with pytest.raises(ConfigError, match="readers scan as the dataset"):
        aggregate(harvested.output_path, BY_REGION, harvested.output_path / "agg.csv")
