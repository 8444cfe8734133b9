"""The live progress display: plain lines off a terminal, a rich table on one.

Two kinds of test. End-to-end ones run a real harvest against the in-process simulator with the
display on and compare what it showed with `status_report` and the simulator's own counters.
Direct ones drive `show_progress` on a fake clock: `Ticker` stands in for the module's `anyio`
(only `sleep` is used) and `time`, so "every 30 s" is checked without waiting 30 s.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from rich.console import Console

import harvester.progress as progress
from harvester.orchestrator import Harvest, status_report
from harvester.simulator.app import Simulator
from harvester.simulator.testing import running_simulator
from harvester.state import utc_day
from tests.orchestrator.conftest import (
    CREDS,
    FAST_TASKS,
    SIM,
    SIM_ENV,
    counted_requests,
    make_study,
    options,
)

pytestmark = pytest.mark.anyio

SECRET = CREDS.client_secret
#: 2024-03-05 12:00:00 UTC: a fake clock far from the wall clock, mid-day (no quota reset).
T0 = datetime(2024, 3, 5, 12, tzinfo=UTC).timestamp()
REAL_SLEEP = anyio.sleep
#: One plain line; a rich frame is turned into the same shape (see `frame_line`).
LINE = re.compile(
    r"^harvester: shards (?P<committed>\d+)/(?P<total>\d+) committed, (?P<splits>\d+) splits, "
    r"(?P<parked>\d+) parked"
    r" \| records (?P<records>[\d,]+) \((?P<rate>[\d,]+)/s\)"
    r" \| requests (?P<requests>[\d,]+) this run; today (?P<req_today>[\d,]+)/(?P<req_cap>[\d,]+)"
    r", records (?P<rec_today>[\d,]+)/(?P<rec_cap>[\d,]+)"
    r" \| eta (?P<eta>-|\d+h\d\dm|\d+m\d\ds)"
    r"(?: \| quota waiting (?P<wait>-?\d+)s for 00:00 UTC)?"
    r"(?: \| errors (?P<errors>.+))?$"
)
ROW_KEYS = ("shards", "records", "requests", "eta", "quota", "errors")
ROW = re.compile(rf"^\s*({'|'.join(ROW_KEYS)})\s{{2,}}(\S.*?)\s*$")


def parse(line: str) -> dict[str, int | str]:
    m = LINE.match(line)
    assert m is not None, f"not a progress line: {line!r}"
    return {
        k: int(v.replace(",", "")) if v is not None and re.fullmatch(r"-?[\d,]+", v) else v or ""
        for k, v in m.groupdict().items()
    }


def progress_lines(text: str) -> list[str]:
    """The plain progress lines in a stream (the end-of-run summary and warnings are not)."""
    return [line for line in text.splitlines() if line.startswith("harvester: shards ")]


def frames(text: str, study_name: str) -> list[dict[str, str]]:
    """Every rich frame in a recorded console, as {row: value}, oldest first."""
    out: list[dict[str, str]] = []
    for chunk in text.split(f"harvesting {study_name}")[1:]:
        rows: dict[str, str] = {}
        for line in chunk.splitlines():
            m = ROW.match(line)
            if m is not None and m[1] not in rows:
                rows[m[1]] = m[2]
        out.append(rows)
    return out


def frame_line(rows: dict[str, str]) -> str:
    return "harvester: " + " | ".join(f"{k} {rows[k]}" for k in ROW_KEYS if k in rows)


class TtyBuffer(io.StringIO):
    """A stderr that says it is a terminal (the rich branch), recording what reaches it."""

    def isatty(self) -> bool:
        return True


class Ticker:
    """A fake clock for the display: progress.py's `anyio.sleep` and the
    harvest's clock. Each sleep moves the clock on, lets `on_tick` change the run's counters
    and, past `ticks` sleeps, cancels the display (as the end of a run does)."""

    def __init__(self, now: float, *, ticks: int) -> None:
        self.now = now
        self.ticks = ticks
        self.sleeps: list[float] = []
        self.on_tick: Callable[[int], None] = lambda k: None
        self.scope: anyio.CancelScope | None = None

    def clock(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.on_tick(len(self.sleeps))
        if len(self.sleeps) > self.ticks:
            assert self.scope is not None
            self.scope.cancel()
        await REAL_SLEEP(0)

    async def drive(self, h: Harvest) -> None:
        """`show_progress` until the tick after the last one (it runs until cancelled)."""
        with anyio.CancelScope() as scope:
            self.scope = scope
            await progress.show_progress(h.watched())
        assert scope.cancelled_caught, "the display returned on its own"


def recording_console(monkeypatch: pytest.MonkeyPatch) -> tuple[list[Console], io.StringIO]:
    """Make progress.py's Console a recording one on a StringIO, as a terminal would get."""
    raw = io.StringIO()
    made: list[Console] = []

    def factory(*args: Any, **kwargs: Any) -> Console:
        console = Console(file=raw, record=True, force_terminal=True, width=200)
        made.append(console)
        return console

    monkeypatch.setattr(progress, "Console", factory)
    return made, raw


def idle_harvest(tmp_path: Path, clock: Callable[[], float]) -> Harvest:
    """A Harvest that is never run: its counters are set by hand (no network)."""
    study = make_study(tmp_path, "http://127.0.0.1:9", days=3)
    return Harvest(study, CREDS, options(progress=True), clock=clock)


@pytest.fixture
def harvests() -> Iterator[list[Harvest]]:
    made: list[Harvest] = []
    yield made
    for h in made:
        h.state.close()


async def harvest_with_display(
    sim: Simulator, tmp_path: Path, stderr: io.StringIO, harvests: list[Harvest]
) -> Harvest:
    """A whole harvest with the display on, its stderr going to `stderr`."""
    study = make_study(tmp_path, sim.base_url, days=3)
    h = Harvest(study, CREDS, options(progress=True), clock=sim.clock.now)
    harvests.append(h)
    real = sys.stderr
    sys.stderr = stderr
    try:
        assert await h.run() == 0
    finally:
        sys.stderr = real
    return h


def final_report(h: Harvest) -> dict[str, Any]:
    return status_report(h.study, now=h.clock())


def assert_matches_totals(shown: dict[str, int | str], h: Harvest, sim: Simulator) -> None:
    """What the display showed last is what the run and the state say happened."""
    report = final_report(h)
    assert report["complete"]
    assert shown["committed"] == report["committed_plan_shards"] == 3
    assert shown["total"] == report["plan_shards"]
    assert shown["parked"] == len(report["parked"]) == 0
    assert shown["records"] == report["records"] == report["dataset_rows"] == h.stats.records
    assert shown["requests"] == counted_requests(sim) == h.stats.requests
    assert shown["req_today"] == report["requests_today"]
    assert shown["rec_today"] == report["records_today"]
    # "quota left today": the cap shown minus the use shown is what `harvester status` says.
    assert shown["req_cap"] == h.study.quota.daily_requests
    assert int(shown["req_cap"]) - int(shown["req_today"]) == report["requests_left_today"]
    assert int(shown["rec_cap"]) - int(shown["rec_today"]) == report["records_left_today"]
    assert shown["eta"] == "-"  # nothing left to do
    assert int(shown["rate"]) > 0


# --------------------------------------------------------------------------- plain lines, direct


async def test_plain_lines_every_30_s_carry_the_promised_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, harvests: list[Harvest]
) -> None:
    ticker = Ticker(T0, ticks=3)
    h = idle_harvest(tmp_path, ticker.clock)
    harvests.append(h)
    h.stats.plan_total = 200
    day = utc_day(T0)

    def work(k: int) -> None:  # each 30 s: one more shard, 10 requests, 600·(2k-1) records
        if k > ticker.ticks:
            return  # the run is over
        s = h.stats
        s.plan_committed = s.plan_committed_this_run = k
        s.requests = 10 * k
        s.records = 600 * k * k
        assert h.state.reserve(day, 10)
        h.state.settle(day, records=600 * (2 * k - 1))

    ticker.on_tick = work
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(progress, "anyio", ticker)
    await ticker.drive(h)

    assert progress.PLAIN_EVERY == 30.0  # the README's "plain lines every 30 s"
    assert ticker.sleeps == [30.0] * 4
    assert stderr.getvalue().splitlines() == [
        "harvester: shards 1/200 committed, 0 splits, 0 parked | records 600 (20/s) | "
        "requests 10 this run; today 10/1,000, records 600/100,000 | eta 1h39m",
        "harvester: shards 2/200 committed, 0 splits, 0 parked | records 2,400 (40/s) | "
        "requests 20 this run; today 20/1,000, records 2,400/100,000 | eta 1h39m",
        "harvester: shards 3/200 committed, 0 splits, 0 parked | records 5,400 (60/s) | "
        "requests 30 this run; today 30/1,000, records 5,400/100,000 | eta 1h38m",
    ]
    last = parse(stderr.getvalue().splitlines()[-1])
    report = status_report(h.study, now=ticker.now)
    assert int(last["req_cap"]) - int(last["req_today"]) == report["requests_left_today"] == 970
    assert int(last["rec_cap"]) - int(last["rec_today"]) == report["records_left_today"]


async def test_interval_knob_and_the_rows_that_appear_only_when_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, harvests: list[Harvest]
) -> None:
    monkeypatch.setattr(progress, "PLAIN_EVERY", 5.0)
    ticker = Ticker(T0, ticks=1)
    h = idle_harvest(tmp_path, ticker.clock)
    harvests.append(h)
    s = h.stats
    s.plan_total, s.plan_committed, s.plan_committed_this_run = 10, 4, 2
    s.splits, s.parked = 3, 1
    s.records = 1_000
    s.errors = Counter({"http_500": 3, "token_rejected": 1})

    def wait_for_midnight(k: int) -> None:
        s.quota_wait_until = ticker.now + 125  # the quota gate holds the workers

    ticker.on_tick = wait_for_midnight
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(progress, "anyio", ticker)
    await ticker.drive(h)

    assert ticker.sleeps == [5.0, 5.0]
    # 5 s for 2 shards, 6 left: 15 s. 1,000 records in 5 s: 200/s.
    assert stderr.getvalue().splitlines() == [
        "harvester: shards 4/10 committed, 3 splits, 1 parked | records 1,000 (200/s) | "
        "requests 0 this run; today 0/1,000, records 0/100,000 | eta 0m15s | "
        "quota waiting 125s for 00:00 UTC | errors http_500 3, token_rejected 1"
    ]
    parse(stderr.getvalue().splitlines()[0])  # the shared parser reads the optional rows too


async def test_the_rate_uses_the_harvests_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, harvests: list[Harvest]
) -> None:
    now = [T0]
    h = idle_harvest(tmp_path, lambda: now[0])
    harvests.append(h)
    h.stats.records = 3_000
    now[0] = T0 + 100.0
    # The ETA already uses the harvest's clock; the rate should as well: 3,000 in 100 s.
    assert "records 3,000 (30/s)" in progress.render_line(h.watched())


# --------------------------------------------------------------------------- plain lines, a run


async def test_plain_lines_follow_a_real_run_and_end_on_its_totals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, harvests: list[Harvest]
) -> None:
    monkeypatch.setattr(progress, "PLAIN_EVERY", 0.002)  # many lines in a sub-second run
    stderr = io.StringIO()
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        h = await harvest_with_display(sim, tmp_path, stderr, harvests)
        during = [parse(line) for line in stderr.getvalue().splitlines()]
        assert during, "no progress line during the run"
        for before, after in itertools.pairwise(during):
            for key in ("committed", "records", "requests", "req_today", "rec_today"):
                assert int(before[key]) <= int(after[key]), (key, before, after)
        for shown in during:
            assert shown["total"] == 3
            assert int(shown["records"]) <= h.stats.records
            assert int(shown["requests"]) <= h.stats.requests

        # The line the display writes once the run is over (its next 30 s tick).
        monkeypatch.setattr(progress, "PLAIN_EVERY", 30.0)
        stderr.seek(0)
        stderr.truncate()
        ticker = Ticker(h.clock(), ticks=1)
        monkeypatch.setattr(progress, "anyio", ticker)
        monkeypatch.setattr(sys, "stderr", stderr)
        await ticker.drive(h)
        (line,) = stderr.getvalue().splitlines()
        assert_matches_totals(parse(line), h, sim)


# --------------------------------------------------------------------------- rich


async def test_rich_table_refreshes_each_second_and_its_last_frame_is_current(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, harvests: list[Harvest]
) -> None:
    consoles, _ = recording_console(monkeypatch)
    ticker = Ticker(T0, ticks=2)
    h = idle_harvest(tmp_path, ticker.clock)
    harvests.append(h)
    h.stats.plan_total = 50

    def work(k: int) -> None:
        h.stats.plan_committed = h.stats.plan_committed_this_run = k
        h.stats.records = 100 * k

    ticker.on_tick = work
    tty = TtyBuffer()
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.setattr(progress, "anyio", ticker)
    await ticker.drive(h)

    (console,) = consoles
    text = console.export_text()  # (this empties the record)
    shown = [parse(frame_line(f)) for f in frames(text, h.study.name)]
    assert ticker.sleeps == [1.0, 1.0, 1.0]  # one update a second
    assert shown[0]["records"] == 0 and shown[0]["eta"] == "-"
    # Frames are drawn by rich's own refresh thread (real time), so which updates show up in
    # between is not fixed; they come in order. The run ended during the third second: its
    # numbers are in the last frame although no regular update drew them.
    records = [int(f["records"]) for f in shown]
    assert set(records) <= {0, 100, 200, 300} and records == sorted(records)
    last = shown[-1]
    assert (last["committed"], last["total"], last["records"], last["rate"]) == (3, 50, 300, 100)
    assert last["eta"] == "0m47s"  # 1 s a shard, 47 left
    assert "harvester: shards" not in tty.getvalue() + text, "plain lines too"


async def test_rich_display_of_a_real_run_ends_on_its_totals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, harvests: list[Harvest]
) -> None:
    consoles, raw = recording_console(monkeypatch)
    tty = TtyBuffer()
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        h = await harvest_with_display(sim, tmp_path, tty, harvests)
        (console,) = consoles
        shown = frames(console.export_text(), h.study.name)  # (this empties the record)
        assert len(shown) >= 2, "no frame beyond the first"
        assert raw.getvalue().count("\x1b[") > 0, "not rendered as on a terminal"
        assert "harvester: shards" not in tty.getvalue(), "plain lines on a terminal"
        assert_matches_totals(parse(frame_line(shown[-1])), h, sim)


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("mode", ["plain", "rich"])
async def test_the_display_never_shows_the_secret_or_a_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, harvests: list[Harvest], mode: str
) -> None:
    monkeypatch.setattr(progress, "PLAIN_EVERY", 0.002)
    consoles, raw = recording_console(monkeypatch)
    stderr = TtyBuffer() if mode == "rich" else io.StringIO()
    # Expired tokens and 500s: new tokens mid-run, and the errors row on display.
    faults = {"token_expiry": 0.15, "http_500": 0.1}
    tokens: list[str] = []
    async with running_simulator("clean", **SIM, **FAST_TASKS, faults=faults) as sim:
        issue = sim.issue_token

        def recording_issue() -> str:  # the simulator forgets the tokens it revokes
            tokens.append(issue())
            return tokens[-1]

        monkeypatch.setattr(sim, "issue_token", recording_issue)
        h = await harvest_with_display(sim, tmp_path, stderr, harvests)
    if mode == "rich":
        (console,) = consoles
        text = console.export_text()
        shown = text + raw.getvalue() + stderr.getvalue()
        last = frames(text, h.study.name)[-1]
        assert "errors" in last, "the run had no errors: the errors row went untested"
    else:
        assert not consoles
        shown = stderr.getvalue()
        assert progress_lines(shown), "nothing was displayed"
        shown += progress.render_line(h.watched())
        assert "errors " in progress.render_line(h.watched())
    assert len(tokens) >= 2, "the faults did not rotate the token"
    assert SECRET not in shown
    for token in tokens:
        assert token not in shown
        assert token[-12:] not in shown  # not even a tail of it


# --------------------------------------------------------------------------- the CLI option

#: `harvester ARGS` with the plain lines every 5 ms instead of every 30 s.
FAST_LINES = (
    "import sys; import harvester.progress as p; p.PLAIN_EVERY = 0.005; "
    "from harvester.cli import main; main(sys.argv[1:], prog_name='harvester')"
)


async def run_cli(config: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """`harvester run` in its own process, stderr a pipe (not a terminal)."""

    def call() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", FAST_LINES, "run", str(config), *flags],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **SIM_ENV},
            check=False,
        )

    return await anyio.to_thread.run_sync(call)


def summary_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [line for line in result.stderr.splitlines() if " complete after " in line]


async def test_cli_progress_and_no_progress(tmp_path: Path) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        on = await run_cli(make_study(tmp_path / "on", sim.base_url).config_path, "--progress")
        off = await run_cli(make_study(tmp_path / "off", sim.base_url).config_path, "--no-progress")
    assert summary_lines(on) and summary_lines(off)
    # The same run with the display on writes lines (so the check below can see them)...
    lines = progress_lines(on.stderr)
    assert lines, on.stderr
    assert parse(lines[-1])["total"] == 3
    # ...and with --no-progress, not one: only the end-of-run summary is on stderr.
    assert progress_lines(off.stderr) == []
    assert off.stdout == ""
    assert [line for line in off.stderr.splitlines() if line] == summary_lines(off)
    assert SECRET not in on.stderr + on.stdout + off.stderr + off.stdout


async def test_cli_default_off_a_terminal_writes_plain_lines(tmp_path: Path) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        result = await run_cli(make_study(tmp_path, sim.base_url).config_path)
    assert summary_lines(result)
    assert progress_lines(result.stderr), result.stderr
