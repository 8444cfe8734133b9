"""Live progress: a rich display on a terminal, plain periodic lines otherwise (cron, CI, nohup).

Shows plan shards done/total, records, requests, today's quota use against its caps, rate and
ETA. It only reads what the run hands it (`Watched`: its counters, its clock, the quota day's
use); it never slows the harvest (one refresh a second).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import anyio
from rich.console import Console
from rich.live import Live
from rich.table import Table

from harvester.config import QuotaSettings
from harvester.logs import console_lines_to
from harvester.state import Usage, utc_day

__all__ = ["Counters", "Watched", "render_line", "show_progress"]

PLAIN_EVERY = 30.0


class Counters(Protocol):
    """The run's counters the display shows (this run only; `started` on the run's clock)."""

    started: float
    requests: int
    records: int
    splits: int
    parked: int
    plan_total: int
    plan_committed: int
    plan_committed_this_run: int
    errors: Counter[str]
    quota_wait_until: float | None


@dataclass(frozen=True, slots=True)
class Watched:
    """What the display reads of a run."""

    title: str
    stats: Counters
    clock: Callable[[], float]
    #: The quota ledger's use of a UTC day (`YYYY-MM-DD`): the pool's, when the study shares one.
    usage: Callable[[str], Usage]
    quota: QuotaSettings


def _eta(h: Watched, now: float) -> str:
    s = h.stats
    done = s.plan_committed_this_run
    left = s.plan_total - s.plan_committed
    if done == 0 or left <= 0:
        return "-"
    per_shard = (now - s.started) / done
    secs = int(per_shard * left)
    return (
        f"{secs // 3600}h{secs % 3600 // 60:02d}m"
        if secs >= 3600
        else f"{secs // 60}m{secs % 60:02d}s"
    )


def _fields(h: Watched) -> list[tuple[str, str]]:
    s = h.stats
    now = h.clock()
    elapsed = max(now - s.started, 1e-6) if s.started else 1e-6  # `started` is on this clock
    usage = h.usage(utc_day(now))
    quota = h.quota
    rows = [
        (
            "shards",
            f"{s.plan_committed}/{s.plan_total} committed, {s.splits} splits, {s.parked} parked",
        ),
        ("records", f"{s.records:,} ({s.records / elapsed:,.0f}/s)"),
        (
            "requests",
            f"{s.requests:,} this run; today {usage.requests:,}/{quota.daily_requests:,}"
            f", records {usage.records:,}/{quota.daily_records:,}",
        ),
        ("eta", _eta(h, now)),
    ]
    if s.quota_wait_until is not None:
        rows.append(("quota", f"waiting {int(s.quota_wait_until - now)}s for 00:00 UTC"))
    if s.errors:
        rows.append(("errors", ", ".join(f"{k} {v}" for k, v in s.errors.most_common(4))))
    return rows


def render_line(h: Watched) -> str:
    return " | ".join(f"{k} {v}" for k, v in _fields(h))


def _table(h: Watched) -> Table:
    t = Table(title=h.title, show_header=False, box=None)
    for k, v in _fields(h):
        t.add_row(k, v)
    return t


async def show_progress(h: Watched) -> None:
    """Until cancelled: a live table on a terminal, a plain line every 30 s elsewhere."""
    if sys.stderr.isatty():
        console = Console(file=sys.stderr)
        live = Live(
            _table(h),
            console=console,
            refresh_per_second=2,
            transient=False,
            # Rows come and go (quota wait, errors): a frame taller than the screen could not
            # be redrawn in place, so it is cut, never scrolled.
            vertical_overflow="crop",
        )

        def above(line: str) -> None:
            # Printed through the live console: rich clears the region, prints the line, and
            # draws the frame again below it.
            console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)

        with live, console_lines_to(above):
            try:
                while True:
                    await anyio.sleep(1.0)
                    live.update(_table(h))
            finally:
                live.update(_table(h), refresh=True)  # the run's last numbers, not a second old
    while True:
        await anyio.sleep(PLAIN_EVERY)
        print(f"harvester: {render_line(h)}", file=sys.stderr, flush=True)
