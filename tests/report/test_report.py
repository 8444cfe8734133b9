"""`harvester report`: the page is drawn from a real harvest's state and dataset, opened in a real
headless Chromium, and must load without a JavaScript error, ask no host for anything, and show
every chart with the numbers the state and DuckDB give."""

from __future__ import annotations

import json
import sqlite3
import tomllib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import tomli_w

from harvester import HarvesterError
from harvester.config import Study, loads_study
from harvester.orchestrator import EXIT_OK, EXIT_QUOTA
from harvester.report import default_report_path, write_report
from harvester.simulator.testing import running_simulator
from harvester.state import SqliteState
from tests.orchestrator.conftest import (
    DAY,
    FAST_TASKS,
    SIM,
    cli,
    epoch,
    make_study,
    run,
    study_text,
)
from tests.report.browser import Chromium, Page, file_url
from tests.state._schemas import SQLITE_V1

CHARTS = ("videos", "quota", "failures", "windows", "timeline")
#: A public-API study also shows what the exact local filter dropped.
REST_CHARTS = (*CHARTS, "filter")


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    with Chromium() as b:
        yield b


def open_report(browser: Chromium, path: Path) -> Page:
    """Open the page; it must load with no error and no request beyond the file itself."""
    page = browser.open(file_url(path))
    page.wait_for(
        "Array.from(document.querySelectorAll('section.chart')).every("
        "s => s.querySelector('.js-plotly-plot .main-svg') !== null)"
    )
    browser.pump(0.2)  # anything the charts would still log or fetch
    assert page.errors == [], page.errors
    assert page.requests == [file_url(path)], page.requests
    return page


def traces(page: Page, chart: str) -> list[dict[str, Any]]:
    """The traces plotly drew in a chart, as the browser holds them."""
    data: list[dict[str, Any]] = page.evaluate(
        f"document.getElementById('chart-{chart}').data.map(t => ({{name: t.name, "
        "x: Array.from(t.x || []), y: Array.from(t.y || []), base: Array.from(t.base || [])}))"
    )
    return data


def by_name(page: Page, chart: str) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in traces(page, chart)}


def day_of(value: str) -> date:
    return date.fromisoformat(value[:10])


def videos_per_day(root: Path) -> Counter[date]:
    """What DuckDB reads from the dataset, independently of the report's own query."""
    rows = (
        duckdb.connect()
        .execute(
            "SELECT CAST(to_timestamp(create_time) AT TIME ZONE 'UTC' AS DATE), count(*) "
            "FROM read_parquet(?) GROUP BY 1",
            [str(root / "**" / "*.parquet")],
        )
        .fetchall()
    )
    return Counter({d: n for d, n in rows})


# --------------------------------------------------------------------------- a real harvest


@pytest.mark.slow
@pytest.mark.anyio
async def test_report_of_a_scheduled_study_shows_every_chart_from_state_and_dataset(
    tmp_path: Path, browser: Chromium
) -> None:
    """Ten days up to today under a quota of 15 requests a day (so the run stops with 75 and
    continues the next simulated day), with one day whose every call fails (split, then
    parked): every chart has something to show."""
    today = datetime.now(UTC).date()
    start = today - timedelta(days=9)
    poisoned = today - timedelta(days=5)  # in the window [today-5, today-3)
    # The simulator's corpus reaches today (its default ends earlier).
    async with running_simulator("clean", **SIM, end=today + timedelta(days=1)) as sim:
        study = make_study(
            tmp_path,
            sim.base_url,
            source="research-api",
            start=start,
            days=10,
            window=2,
            daily_requests=15,
            on_exhausted="exit",
            max_concurrency=2,
        )
        sim.set_faults(poison_start=epoch(poisoned), poison_end=epoch(poisoned) + DAY)
        codes = []
        for _ in range(40):
            try:
                codes.append(await run(sim, study))
            except HarvesterError as exc:
                assert "parked" in str(exc)
                codes.append(1)
                break
            sim.clock.advance(DAY)  # the next day's quota
        assert codes[0] == EXIT_QUOTA and codes[-1] == 1, codes
        with SqliteState(study.state_path) as state:
            quota = state.quota_days()
            errors = state.error_hours()
            harvests = state.window_harvests()
            shards = state.shards()
        out = write_report(study, tmp_path / "report.html")

    page = open_report(browser, out)
    assert page.evaluate("document.querySelectorAll('section.chart').length") == len(REST_CHARTS)
    for chart in REST_CHARTS:
        assert page.evaluate(f"document.getElementById('chart-{chart}').data.length") > 0, chart

    # Videos per day: the bars are DuckDB's counts; the poisoned window is not in the dataset;
    # the last three days were harvested less than 48 hours after they ended.
    videos = by_name(page, "videos")
    drawn: Counter[date] = Counter()
    unsettled = "unsettled (counts still changing; refreshed by the next runs)"
    for name in ("settled", unsettled, "provisional (harvested < 48 h after the day)"):
        for x, y in zip(videos[name]["x"], videos[name]["y"], strict=True):
            drawn[day_of(x)] += y
    truth = videos_per_day(study.output_path)
    assert drawn == truth and sum(truth.values()) > 0
    # The runs spread over simulated days: the first windows have settled (harvested again
    # 10 days after their end), the later ones are still settling.
    settled, settling = (sorted(map(day_of, videos[n]["x"])) for n in ("settled", unsettled))
    assert settling and (not settled or settled[-1] < settling[0])
    missing = {day_of(x) for x in videos["not harvested yet"]["x"]}
    assert missing == {poisoned, poisoned + timedelta(days=1)}
    provisional = {day_of(x) for x in videos["provisional (harvested < 48 h after the day)"]["x"]}
    if datetime.now(UTC).date() == today:  # not across midnight
        assert provisional == {today - timedelta(days=d) for d in range(3)} - missing
    gaps = {day_of(x) for x in videos["harvested, no videos"]["x"]}
    assert all(truth[d] == 0 for d in gaps)

    # Quota: one bar per ledger day with what the state counted; the cap drawn at the cap.
    shown = traces(page, "quota")
    used = [t for t in shown if t["name"] == "used"]
    assert [day_of(x) for x in used[0]["x"]] == [date.fromisoformat(u.day) for u in quota]
    assert used[0]["y"] == [u.requests for u in quota]
    assert used[1]["y"] == [u.records for u in quota]
    # A day stops when what is left cannot finish a window: at the cap or a few requests short.
    assert len(quota) == len(codes) and all(12 <= u.requests <= 15 for u in quota[:-1])
    caps = [t for t in shown if t["name"] == "daily cap"]
    assert set(caps[0]["y"]) == {15} and set(caps[1]["y"]) == {study.quota.daily_records}
    forecast = [t for t in shown if t["name"] == "forecast to completion"]
    assert sum(forecast[0]["y"]) > 0  # the parked window is still to do

    # Failures: every kind the state counted, in the same numbers.
    failures = {t["name"]: sum(t["y"]) for t in traces(page, "failures")}
    expected_failures: Counter[str] = Counter()
    for e in errors:
        expected_failures[e.kind] += e.count
    assert failures == dict(expected_failures) and "5xx" in failures

    # Windows: the poisoned window's split and its parked day.
    windows = by_name(page, "windows")
    assert sum(windows["splits"]["y"]) == sum(1 for s in shards if s.status == "split") >= 1
    assert sum(windows["parked leaves"]["y"]) == 1
    parked = page.evaluate("document.querySelector('#parked table').innerText")
    assert poisoned.strftime("%Y%m%d") in parked and "5xx" in parked

    # Timeline: one bar per committed harvest, starting when the state says it started.
    timeline = by_name(page, "timeline")
    bars = timeline["harvested"]
    # Each of the 4 committed windows was harvested, then refreshed on later days.
    assert len(bars["y"]) == len(harvests) > len({h.plan_key for h in harvests}) == 4
    assert sorted(bars["y"]) == sorted(h.plan_key for h in harvests)
    starts = sorted(
        datetime.fromisoformat(base).replace(tzinfo=UTC).timestamp() for base in bars["base"]
    )
    began = sorted(h.started_at for h in harvests if h.started_at is not None)
    assert len(began) == len(starts)
    assert all(abs(a - b) < 0.01 for a, b in zip(starts, began, strict=True))

    # The exact filter: what the state counted per window, drawn per window.
    drops = by_name(page, "filter")["dropped by the exact filter"]
    assert sum(drops["y"]) == sum(s.filtered for s in shards) > 0

    text = page.evaluate("document.body.innerText")
    assert "not complete" in text and "sample" not in text
    assert "4 of 5 committed" in text
    assert f"exact-filter drops\t{sum(s.filtered for s in shards):,} records" in text


# --------------------------------------------------------------------------- what the page says


@pytest.mark.anyio
async def test_a_test_stage_study_carries_the_sample_banner(
    tmp_path: Path, browser: Chromium
) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        tables = tomllib.loads(study_text(sim.base_url, source="rqs", days=2))
        tables["study"]["stage"] = "test"
        config = tmp_path / "study.toml"
        config.write_text(tomli_w.dumps(tables))
        study = loads_study(config.read_text(), config)
        assert await run(sim, study) == EXIT_OK
    page = open_report(browser, write_report(study, tmp_path / "report.html"))
    banner = page.evaluate("document.getElementById('sample-banner').innerText")
    assert "This dataset is a sample" in banner and "5,000 records a day" in banner
    assert "rqs (test stage)" in page.evaluate("document.body.innerText")
    # RQS matches exactly: no exact-filter chart.
    assert page.evaluate("document.querySelectorAll('section.chart').length") == len(CHARTS)
    # How the sample was drawn, when the manifest says it.
    manifest_path = study.output_path / "_harvest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["completeness"] = "sample"
    manifest["sample"] = {
        "stage": "test",
        "limit_per_window": 250,
        "day_budget": 5000,
        "windows": 2,
        "windows_sampled": 2,
    }
    manifest_path.write_text(json.dumps(manifest))
    page = open_report(browser, write_report(study, tmp_path / "report.html"))
    banner = page.evaluate("document.getElementById('sample-banner').innerText")
    assert "Here: at most 250 random videos per window and 5,000 a day, 2 of 2 windows" in banner
    assert "completeness\tsample" in page.evaluate("document.body.innerText")


def _old_state(study: Study) -> None:
    """The state file an older harvester (schema 1) left: windows committed without harvest
    times, errors without hours, a dataset folder with a manifest of its own."""
    study.state_path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(study.state_path)
    db.executescript(SQLITE_V1)
    db.execute("PRAGMA user_version = 1")
    db.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [("study", study.name), ("fingerprint", study.plan_fingerprint()), ("version", "0.1.0")],
    )
    first = epoch(study.start_date)
    db.execute(
        "INSERT INTO shards (key, plan_key, start_ts, end_ts, status, records, pages, "
        "updated_at, committed_at) VALUES ('20220101-20220102', '20220101-20220102', ?, ?, "
        "'done', 0, 1, 1.0, 1700000000.0)",
        (first, first + DAY),
    )
    db.execute("INSERT INTO errors (kind, count) VALUES ('5xx', 3)")
    db.execute("INSERT INTO quota (day, requests, records) VALUES ('2023-11-14', 7, 0)")
    db.commit()
    db.close()
    study.output_path.mkdir(parents=True, exist_ok=True)
    (study.output_path / "_harvest.json").write_text(
        json.dumps({"study": study.name, "completeness": {"stage": "execution", "exact": True}})
    )


def test_an_older_state_without_history_still_gives_every_chart(
    tmp_path: Path, browser: Chromium
) -> None:
    study = make_study(tmp_path, "http://127.0.0.1:9", source="research-api", days=3)
    _old_state(study)
    out = write_report(study, tmp_path / "report.html")
    page = open_report(browser, out)
    assert page.evaluate("document.querySelectorAll('section.chart').length") == len(REST_CHARTS)
    text = page.evaluate("document.body.innerText")
    # What the old state knows is shown; what it does not is said, not invented.
    assert "Before the state recorded failures by hour (an older harvester): 5xx 3" in text
    assert "committed (start not recorded)" in json.dumps(traces(page, "timeline"))
    assert "completeness\tstage: execution; exact: true" in text
    # A state from before the exact filter's count migrates with a count of zero.
    assert "exact-filter drops\t0 records the API returned" in text
    instants = by_name(page, "timeline")["committed (start not recorded)"]
    assert instants["y"] == ["20220101-20220102"]


def test_the_page_loads_nothing_from_another_host(tmp_path: Path) -> None:
    study = make_study(tmp_path, "http://127.0.0.1:9", source="research-api", days=3)
    _old_state(study)
    html = write_report(study, tmp_path / "report.html").read_text()
    lowered = html.lower()
    assert "<script src" not in lowered and "<link" not in lowered and "@import" not in lowered
    assert "<iframe" not in lowered
    # plotly.js is in the page itself.
    assert lowered.count("<script") >= 1 + len(REST_CHARTS) and "plotly" in lowered


# --------------------------------------------------------------------------- the command


def test_cli_writes_beside_the_state_or_where_told_and_refuses_an_unstarted_study(
    tmp_path: Path,
) -> None:
    study = make_study(tmp_path, "http://127.0.0.1:9", source="research-api", days=3)
    config = str(tmp_path / "study.toml")
    refused = cli("report", config)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip().splitlines() == [
        f"harvester: error: study.toml: nothing to report yet: no state at {study.state_path}; "
        "run `harvester run study.toml` first"
    ]
    _old_state(study)
    default = cli("report", config)
    assert default.returncode == 0, default.stderr
    assert default.stdout.strip() == str(default_report_path(study))
    assert default_report_path(study) == study.state_path.with_name("e2e.report.html")
    assert default_report_path(study).stat().st_size > 1_000_000  # plotly.js is inside
    told = cli("report", config, "--out", str(tmp_path / "out" / "r.html"))
    assert told.returncode == 0 and (tmp_path / "out" / "r.html").exists()
    assert not list((tmp_path / "out").glob(".*"))  # no temporary left behind
    bad = cli("report", str(tmp_path / "missing.toml"))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.postgres
@pytest.mark.anyio
async def test_report_of_a_study_whose_state_is_in_postgres(
    tmp_path: Path, browser: Chromium, pg_url: str
) -> None:
    async with running_simulator("clean", **SIM) as sim:
        study = make_study(
            tmp_path, sim.base_url, source="research-api", days=4, window=2, state_url=pg_url
        )
        assert await run(sim, study) == EXIT_OK
    page = open_report(browser, write_report(study, tmp_path / "report.html"))
    bars = by_name(page, "timeline")["harvested"]
    assert sorted(bars["y"]) == ["20220101-20220103", "20220103-20220105"]
    assert "2 of 2 committed (complete)" in page.evaluate("document.body.innerText")
    assert not study.state_path.exists()


# --------------------------------------------------------------------------- enrichments, pools


def visible_rows(page: Page, selector: str) -> list[list[str]]:
    """The cells of a table as the browser shows them (innerText, so hidden text is not read)."""
    rows: list[list[str]] = page.evaluate(
        f"Array.from(document.querySelectorAll('{selector} tr')).map("
        "r => Array.from(r.children).map(c => c.innerText.trim()))"
    )
    return rows


@pytest.mark.anyio
async def test_the_enrichment_section_shows_targets_rows_pages_and_outcomes_by_kind(
    tmp_path: Path, browser: Chromium
) -> None:
    from harvester.orchestrator._targets import open_enrich_state
    from tests.orchestrator.test_enrich import VERDICTS, enrich_study, read

    async with running_simulator("clean", **SIM, faults=VERDICTS) as sim:
        study = enrich_study(
            tmp_path,
            sim.base_url,
            [{"kind": "comments", "where": "comment_count >= 3"}, {"kind": "users"}],
            days=2,
        )
        assert await run(sim, study) == EXIT_OK
        comment_pages = sim.stats.requests_to("rest.comments")
        user_pages = sim.stats.requests_to("rest.users")
    page = open_report(browser, write_report(study, tmp_path / "report.html"))
    text = page.evaluate("document.body.innerText")
    assert "Enrichments" in text
    table = visible_rows(page, "#enrichments table")
    assert table[0] == [
        "kind", "dataset", "targets", "done", "pending", "unavailable", "failed", "rows",
        "requests answered", "outcomes",
    ]  # fmt: skip
    shown = {r[0]: dict(zip(table[0], r, strict=True)) for r in table[1:]}
    assert list(shown) == ["comments", "users"]
    es = open_enrich_state(study)
    try:
        for e in study.enrichments:
            s = es.summary(e.kind)
            row = shown[e.kind]
            # The dataset's rows as DuckDB reads them, not as the state says.
            assert row["rows"] == f"{len(read(e.output_path)):,}"
            assert row["targets"] == f"{sum(s.targets.values()):,}"
            assert row["done"] == f"{s.targets.get('done', 0):,}"
            assert row["pending"] == row["failed"] == "0"
            assert row["unavailable"] == f"{s.targets.get('unavailable', 0):,}"
    finally:
        es.close()
    # A clean simulator answers every request: the requests it served per kind, verdicts in.
    assert shown["comments"]["requests answered"] == f"{comment_pages:,}"
    assert shown["users"]["requests answered"] == f"{user_pages:,}"
    users = shown["users"]["outcomes"]
    assert users.startswith("ok ") and "private" in users and "deleted" in users
    assert int(shown["users"]["unavailable"]) > 0
    assert shown["comments"]["outcomes"] == f"ok {int(shown['comments']['done']):,}"
    assert page.evaluate("document.querySelector('nav a[href=\"#enrichments\"]') !== null")


@pytest.mark.postgres
@pytest.mark.anyio
async def test_a_pooled_study_shows_the_pool_per_day_by_study_against_the_cap(
    tmp_path: Path, browser: Chromium, pg_url: str
) -> None:
    async with running_simulator("clean", **SIM) as sim:
        spent = {}
        studies = {}
        for name, days in (("alpha", 4), ("beta", 2)):
            studies[name] = make_study(
                tmp_path / name,
                sim.base_url,
                name=name,
                source="research-api",
                days=days,
                window=2,
                state_url=pg_url,
                pool="lab",
                daily_requests=500,
            )
            before = sim.ledger.snapshot()["days"]
            assert await run(sim, studies[name]) == EXIT_OK
            after = sim.ledger.snapshot()["days"]
            spent[name] = {
                d: u["requests"] - before.get(d, {}).get("requests", 0) for d, u in after.items()
            }
    page = open_report(browser, write_report(studies["beta"], tmp_path / "report.html"))
    assert "pool" in [
        c
        for c in page.evaluate(
            "Array.from(document.querySelectorAll('section.chart')).map(s => s.id)"
        )
    ]
    # Both studies stacked, this one first; each bar what the simulator counted for it.
    names = [t["name"] for t in traces(page, "pool")]
    assert names[:4] == ["beta", "beta", "alpha", "alpha"]
    for name in ("alpha", "beta"):
        requests = next(t for t in traces(page, "pool") if t["name"] == name)
        got = {day_of(x).isoformat(): y for x, y in zip(requests["x"], requests["y"], strict=True)}
        assert got == {d: n for d, n in spent[name].items() if n}, name
    caps = [t["y"] for t in traces(page, "pool") if t["name"] == "pool's daily cap"]
    assert caps == [[500, 500], [100_000, 100_000]]  # requests, records
    text = page.evaluate("document.body.innerText")
    assert "Pool lab: use per day by study" in text
    assert "Pool lab: 2 studies" in text and "500 requests" in text
