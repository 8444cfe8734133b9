"""A scheduled study over many simulated days: relative dates, the 48-hour lag, settling counts.

The simulator's index takes up to 48 h to show a video and its counts grow for 10 days (fact 3
of the Research Tools' documentation). A nightly `harvester run` of a study ending "today" must
end with the dataset the index holds on its last day: every video once, with that day's counts.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.dataset as ds
import pytest
import tomli_w

from harvester.config import Study, loads_study
from harvester.orchestrator import EXIT_OK, Harvest, plan_report, status_report, verify_study
from harvester.simulator.app import Simulator
from harvester.simulator.testing import running_simulator
from tests.orchestrator.conftest import (
    CREDS,
    DAY,
    SEED_GROUPS,
    SIM,
    counted_requests,
    epoch,
    options,
    read_duckdb,
)

pytestmark = pytest.mark.anyio

START = date(2022, 1, 3)
FIRST_RUN = date(2022, 1, 6)
#: Nightly runs: enough for the first windows to settle (10 days after their end) and for the
#: last ones to be refreshed several times.
DAYS = 16
FIELDS = ["id", "create_time", "region_code", "hashtag_names", "view_count", "like_count"]


def write_study(tmp_path: Path, base_url: str, **study: Any) -> Path:
    tables: dict[str, Any] = {
        "study": {
            "name": "nightly",
            "source": "research-api",
            "start_date": START.isoformat(),
            "end_date": "today",
            "window": "3d",
            "fields": FIELDS,
            "condition_groups": SEED_GROUPS,
            **study,
        },
        "api": {"base_url": base_url, "max_concurrency": 3, "requests_per_second": 2000},
        "output": {"path": "data/nightly", "history": True},
    }
    path = tmp_path / "study.toml"
    path.write_text(tomli_w.dumps(tables))
    return path


def load(path: Path, sim: Simulator) -> Study:
    return loads_study(path.read_text(), path, today=sim.clock.today())


def next_night(sim: Simulator) -> None:
    """02:10 UTC of the next day: the nightly run's time (counts change on the hour)."""
    now = sim.clock.now()
    sim.clock.advance((now // DAY + 1) * DAY + 2 * 3600 + 600 - now)


async def night(sim: Simulator, study: Study) -> dict[str, int]:
    """One scheduled run; what it spent on new windows and on refreshes (clean simulator:
    a request is a page)."""
    before = counted_requests(sim)
    h = Harvest(study, CREDS, options(), clock=sim.clock.now)
    try:
        assert await h.run() == EXIT_OK
        refresh_pages = sum(
            s.pages for s in h.state.shards() if s.plan_key in h.refreshing and s.status == "done"
        )
    finally:
        h.state.close()
    spent = counted_requests(sim) - before
    return {
        "requests": spent,
        "refresh_requests": refresh_pages,
        "new_requests": spent - refresh_pages,
        "refreshed_windows": h.stats.refreshing,
        "refreshed_rows": h.stats.refreshed_rows,
        "superseded_rows": h.stats.superseded_rows,
    }


async def test_nightly_runs_end_with_the_last_days_index_and_counts(tmp_path: Path) -> None:
    clock_start = epoch(FIRST_RUN) + 2 * 3600 + 600
    async with running_simulator("clean", **SIM, indexing_lag=True, clock_start=clock_start) as sim:
        path = write_study(tmp_path, sim.base_url)
        first_seen: dict[int, int] = {}
        nights = []
        for day in range(DAYS):
            if day:
                next_night(sim)
            study = load(path, sim)
            assert study.end_date == sim.clock.today()
            nights.append(await night(sim, study))
            for vid in read_duckdb(study.output_path).ids:
                first_seen.setdefault(vid, day)

        # The dataset is the index of the last night: every video once, with its counts then.
        now = sim.clock.now()
        expected = sim.oracle(SEED_GROUPS, epoch(START), epoch(study.end_date) + DAY, as_of=now)
        table = ds.dataset(study.output_path, format="parquet", partitioning="hive").to_table()
        ids = table.column("id").to_pylist()
        assert len(ids) == len(set(ids)), "a video has two rows"
        assert set(ids) == expected
        truth = {v["id"]: v for v in sim.corpus.lookup(sorted(expected), as_of=now)}
        rows = table.select(["id", "view_count", "like_count"]).to_pylist()
        stale = [r["id"] for r in rows if r["view_count"] != truth[r["id"]]["view_count"]]
        assert not stale, f"{len(stale)} videos keep counts of an earlier day"
        assert all(r["like_count"] == truth[r["id"]]["like_count"] for r in rows)

        # Videos the index showed late were added by a later night (not only on the last one).
        late = [
            v
            for v, d in first_seen.items()
            if d > 0 and (v >> 32) < epoch(FIRST_RUN) + (d - 1) * DAY
        ]
        assert late, "no video arrived late: the lag was not exercised"

        manifest = json.loads((study.output_path / "_harvest.json").read_text())
        settled_through = date.fromisoformat(manifest["settled_through"])
        # Windows of 3 days from the 3rd: those ending 10 days before the last night are final.
        assert study.end_date - timedelta(days=14) <= settled_through
        assert settled_through < study.end_date - timedelta(days=9)
        assert manifest["unsettled_windows"] > 0
        assert manifest["next_refresh"] is not None

        # Every superseded row is in the history beside the dataset, never inside it.
        history = tmp_path / "data" / "nightly.history"
        con = duckdb.connect()
        superseded = con.sql(
            f"SELECT count(*), count(DISTINCT id) FROM read_parquet('{history}/**/*.parquet', "
            "hive_partitioning = true)"
        ).fetchall()[0]
        assert superseded[0] == sum(n["superseded_rows"] for n in nights)
        assert superseded[0] > superseded[1] > 0
        refreshed_rows = sum(n["refreshed_rows"] for n in nights)
        assert refreshed_rows > 0

        status = status_report(study, now=now)
        assert status["settling"]["settled_through"] == settled_through.isoformat()
        assert status["settling"]["unsettled_windows"] == manifest["unsettled_windows"]
        assert "final through" in status["text"] and "next refresh" in status["text"]
        verified = verify_study(study)
        assert verified["ok"] and not verified["duplicate_ids"], verified["text"]

        refresh = sum(n["refresh_requests"] for n in nights)
        new = sum(n["new_requests"] for n in nights)
        print(
            f"\nmulti-day: {DAYS} nights, {len(ids)} videos, {len(late)} added late, "
            f"{sum(n['refreshed_windows'] for n in nights)} window refreshes, "
            f"{refreshed_rows} rows refreshed, {superseded[0]} rows in history, "
            f"requests: {new} on new windows, {refresh} on refreshes; "
            f"settled through {settled_through}"
        )
        # Refreshes stop once windows settle: the last night refreshes at most the windows of
        # the last 10 days plus the one straddling.
        assert nights[-1]["refreshed_windows"] <= 10 // 3 + 2


async def test_short_quota_new_windows_first_and_an_interrupted_refresh_keeps_the_old_rows(
    tmp_path: Path,
) -> None:
    """A night whose quota runs out mid-refresh: the new days are in, the windows still being
    refreshed keep their earlier rows (readable, once each), and the next night finishes."""
    clock_start = epoch(FIRST_RUN) + 2 * 3600 + 600
    async with running_simulator("clean", **SIM, indexing_lag=True, clock_start=clock_start) as sim:
        path = write_study(tmp_path, sim.base_url, window="1d")
        study = load(path, sim)
        first = await night(sim, study)
        assert first["refreshed_windows"] == 0
        before = set(read_duckdb(study.output_path).ids)

        next_night(sim)
        # Tonight's quota covers the new day and a little more, not the refreshes.
        quota = {"daily_requests": first["requests"] // 2 + 2, "on_exhausted": "exit"}
        text = path.read_text() + "\n" + tomli_w.dumps({"quota": quota})
        path.write_text(text)
        study = load(path, sim)
        h = Harvest(study, CREDS, options(), clock=sim.clock.now)
        try:
            assert await h.run() == 75
            shards = {s.key: s for s in h.state.shards() if s.parent_key is None}
        finally:
            h.state.close()
        new_day = study.end_date.strftime("%Y%m%d")
        assert shards[next(k for k in shards if k.startswith(new_day))].committed_at is not None
        waiting = [k for k in h.refreshing if shards[k].committed_at is None]
        assert waiting, "the quota was not short: every refresh finished"
        ids = read_duckdb(study.output_path).ids
        assert len(ids) == len(set(ids)) and before <= set(ids)

        next_night(sim)
        path.write_text(text.replace(f"daily_requests = {quota['daily_requests']}", ""))
        study = load(path, sim)
        assert (await night(sim, study))["refreshed_windows"] >= len(waiting)
        now = sim.clock.now()
        expected = sim.oracle(SEED_GROUPS, epoch(START), epoch(study.end_date) + DAY, as_of=now)
        ids = read_duckdb(study.output_path).ids
        assert len(ids) == len(set(ids)) and set(ids) == expected


@pytest.mark.parametrize(
    ("end", "settle_days", "warned"),
    [("today", 10, "harvest its last windows again"), ("yesterday", 0, "settle_days = 0")],
)
def test_plan_warns_inside_the_lag_and_prices_staying_current(
    tmp_path: Path, end: str, settle_days: int, warned: str
) -> None:
    path = write_study(
        tmp_path, "http://127.0.0.1:9", start_date="today-60d", end_date=end,
        settle_days=settle_days, window="7d",
    )  # fmt: skip
    report = plan_report(loads_study(path.read_text(), path))
    lag = [w for w in report["warnings"] if "less than 2 days ago" in w]
    assert len(lag) == 1 and warned in lag[0] and "\n" not in lag[0]
    upkeep = report["upkeep"]
    new, refresh = upkeep["daily_requests_new"], upkeep["daily_requests_refresh"]
    assert new >= 1 and upkeep["daily_requests_to_stay_current"] == new + refresh
    assert (refresh > 0) == (settle_days > 0)
    assert "to stay current" in report["text"]


def test_plan_of_a_settled_period_says_nothing_about_settling(tmp_path: Path) -> None:
    path = write_study(tmp_path, "http://127.0.0.1:9", end_date="today-30d")
    report = plan_report(loads_study(path.read_text(), path))
    assert not [w for w in report["warnings"] if "2 days ago" in w]
    assert report["upkeep"]["daily_requests_new"] >= 1  # a relative end grows every day
    fixed = write_study(tmp_path, "http://127.0.0.1:9", end_date="2022-01-30")
    assert "daily_requests_new" not in plan_report(loads_study(fixed.read_text(), fixed))["upkeep"]
