"""Keeping a scheduled study current: a plan that grows with relative dates, and windows that
are harvested again until their counts have settled.

TikTok indexes a video up to 48 hours after it is posted, and its counts take up to 10 days to
settle (research-tools-facts.md, fact 3). A window is *settled* once it was last harvested at
least `settle_days` after its end; until then every run (at most once per UTC day) harvests it
again: late videos are added, counts are refreshed, and the new files replace the old ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog

from harvester.config import Study
from harvester.plan import DAY, Plan, Window, extend_plan
from harvester.plan.estimate import REST_PAGE, RQS_PAGE
from harvester.state import PlannedShard, ShardRecord, StateStore

__all__ = [
    "Settling",
    "SettlingStatus",
    "UpkeepPlan",
    "WindowSettling",
    "extend_study_plan",
    "new_first",
    "settling",
    "settling_status",
    "start_refreshes",
    "upkeep_plan",
]

log = structlog.get_logger("harvester.settle")


@dataclass(frozen=True, slots=True)
class WindowSettling:
    """One plan shard's place on the way to settled counts."""

    key: str
    start: int
    end: int
    #: When it was last committed (None: never harvested yet).
    last_harvest: float | None
    #: When a harvest is late enough to be the last: its end plus `settle_days`.
    settles_at: float
    settled: bool
    #: Harvested before and open again (a refresh under way, or one to finish).
    refreshing: bool


@dataclass(frozen=True, slots=True)
class Settling:
    windows: tuple[WindowSettling, ...]
    settle_days: int
    now: float

    @property
    def unsettled(self) -> list[WindowSettling]:
        return [w for w in self.windows if not w.settled]

    @property
    def settled_count(self) -> int:
        return sum(1 for w in self.windows if w.settled)

    def settled_through(self) -> date | None:
        """The last day up to which every window is settled (None: not even the first)."""
        if not self.windows:
            return None
        first_open = min((w.start for w in self.unsettled), default=None)
        edge = max(w.end for w in self.windows) if first_open is None else first_open
        if edge <= self.windows[0].start:
            return None
        return _day(edge) - timedelta(days=1)

    def next_refresh(self) -> float | None:
        """When a run next has a window to harvest again (None: everything is settled)."""
        times = []
        for w in self.unsettled:
            if w.last_harvest is None:
                continue
            if w.refreshing:
                times.append(self.now)
            else:
                times.append(max(self.now, (w.last_harvest // DAY + 1) * DAY))
        return min(times) if times else None

    def settles_at(self) -> float | None:
        """When the last of today's unsettled windows can be harvested for the last time."""
        return max((w.settles_at for w in self.unsettled), default=None)


@dataclass(frozen=True, slots=True)
class SettlingStatus:
    """`status`'s part: JSON for machines, table rows for people."""

    info: dict[str, Any]
    rows: list[tuple[str, str]]


def _when(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def settling_status(study: Study, state: StateStore, now: float) -> SettlingStatus:
    """Settled and unsettled windows, up to which day counts are final, the next refresh."""
    s = settling(study, state, now)
    through = s.settled_through()
    unsettled = s.unsettled
    harvested = [w for w in unsettled if w.last_harvest is not None]
    next_refresh = s.next_refresh()
    info: dict[str, Any] = {
        "settle_days": study.settle_days,
        "settled_windows": s.settled_count,
        "unsettled_windows": len(unsettled),
        "refreshing_windows": sum(1 for w in unsettled if w.refreshing),
        "settled_through": through.isoformat() if through else None,
        "next_refresh": _when(next_refresh),
        "all_settled_at": _when(s.settles_at()),
    }
    if study.settle_days == 0:
        line = "off (settle_days = 0): windows are harvested once"
    else:
        line = (
            f"{s.settled_count:,} settled, {len(unsettled):,} not yet "
            f"({len(harvested):,} harvested, refreshed daily until {study.settle_days} days "
            "after their end)"
        )
        if through is not None:
            line += f"; final through {through}"
    rows = [("settling", line)]
    if next_refresh is not None:
        due = "now" if next_refresh <= now else _when(next_refresh)
        rows.append(("next refresh", f"{due} (next run); all settled by {info['all_settled_at']}"))
    return SettlingStatus(info, rows)


def _day(ts: float) -> date:
    return datetime.fromtimestamp(ts, UTC).date()


def _last_harvests(state: StateStore) -> dict[str, float]:
    last: dict[str, float] = {}
    for h in state.window_harvests():
        last[h.plan_key] = max(last.get(h.plan_key, 0.0), h.committed_at)
    return last


def settling(study: Study, state: StateStore, now: float) -> Settling:
    """Where every plan shard of the study stands (for `status`, `_harvest.json`, a run)."""
    last = _last_harvests(state)
    wait = study.settle_days * DAY
    out = []
    for s in state.shards():
        if s.parent_key is not None:
            continue
        harvested = last.get(s.key)
        settles_at = float(s.end + wait)
        settled = (
            harvested is not None
            and s.committed_at is not None
            and (study.settle_days == 0 or harvested >= settles_at)
        )
        refreshing = harvested is not None and s.committed_at is None
        out.append(
            WindowSettling(s.key, s.start, s.end, harvested, settles_at, settled, refreshing)
        )
    return Settling(tuple(out), study.settle_days, now)


def start_refreshes(study: Study, state: StateStore, now: float) -> set[str]:
    """Open again every committed window that is not settled and was last harvested on an
    earlier UTC day (oldest first); returns every window being refreshed, these and those an
    earlier run opened and did not finish. Nothing is refreshed with `settle_days = 0`."""
    if study.settle_days == 0:
        return set()
    today = int(now // DAY)
    status = settling(study, state, now)
    refreshing = {w.key for w in status.windows if w.refreshing}
    for w in sorted(status.unsettled, key=lambda w: w.start):
        if w.last_harvest is None or w.refreshing or int(w.last_harvest // DAY) >= today:
            continue
        state.reopen_plan_shard(w.key)
        refreshing.add(w.key)
        log.info(
            "window_refresh",
            window=w.key,
            last_harvest=datetime.fromtimestamp(w.last_harvest, UTC).isoformat(),
            settles=_day(w.settles_at).isoformat(),
        )
    return refreshing


def extend_study_plan(state: StateStore, plan: Plan) -> tuple[int, list[str]]:
    """Add the plan's windows the state does not cover yet; a last window the end date cut
    short is completed by the full one, which takes over its files until it is committed.
    Returns how many windows were added and the staged segments the completed ones held."""
    planned = [Window(s.start, s.end) for s in state.shards() if s.parent_key is None]
    wanted = [s.window for s in plan.shards]
    add, supersede = extend_plan(planned, wanted)
    dropped: list[str] = []
    for old, new in supersede:
        dropped += state.supersede_plan_shard(old.key, PlannedShard(new.key, new.start, new.end))
        log.info("window_completed", window=old.key, by=new.key)
    added = state.add_plan_shards(PlannedShard(w.key, w.start, w.end) for w in add)
    return added + len(supersede), dropped


def new_first(pending: Sequence[ShardRecord], refreshing: Iterable[str]) -> list[ShardRecord]:
    """Pending leaves with new windows before refreshes (oldest first within each): when the
    day's quota runs short, what was never harvested comes before what is only refreshed."""
    again = set(refreshing)
    return sorted(pending, key=lambda s: (s.plan_key in again, s.start))


@dataclass(frozen=True, slots=True)
class UpkeepPlan:
    """What `plan` says about keeping a study current."""

    info: dict[str, Any]
    rows: list[tuple[str, str]]
    warnings: list[str]


def upkeep_plan(study: Study, records_per_day: float, today: date) -> UpkeepPlan:
    """The daily cost of keeping the study current (a new day, the refreshes of the windows
    still settling), and a warning when the end date is inside TikTok's 48-hour lag."""
    warnings: list[str] = []
    lag_days = (today - study.end_date).days
    if lag_days < 2:
        if study.settle_days:
            then = (
                f"the next runs harvest its last windows again until {study.settle_days} days "
                "after their end"
            )
        else:
            then = (
                'settle_days = 0: they stay as harvested; set end_date = "today-2d" or turn '
                "settle_days on"
            )
        warnings.append(
            f"end_date {study.end_date} is less than 2 days ago: TikTok indexes videos up to 48 "
            f"hours late and counts settle over days, so those days are incomplete now; {then}"
        )
    info: dict[str, Any] = {"settle_days": study.settle_days}
    rows: list[tuple[str, str]] = []
    settling_now = study.settle_days > 0 and (today - study.end_date).days < study.settle_days
    if study.end_rule is None and not settling_now:
        return UpkeepPlan(info, rows, warnings)
    page = REST_PAGE if study.source == "research-api" else RQS_PAGE
    per_request = 1 if study.source == "research-api" else 2  # RQS: a create, then pages
    w = study.window_days

    def cost(days: float) -> int:
        return per_request - 1 + max(1, math.ceil(records_per_day * days / page))

    # Every day: the new day (it lands in the open last window), and each window that ends
    # within settle_days harvested again in full.
    unsettled = math.ceil(study.settle_days / w) + 1 if study.settle_days else 0
    new = cost(1) if study.end_rule is not None else 0
    refresh = unsettled * cost(w)
    info.update(
        daily_requests_to_stay_current=new + refresh,
        daily_requests_new=new,
        daily_requests_refresh=refresh,
        windows_refreshed_daily=unsettled,
        daily_records_to_stay_current=round(records_per_day * (1 + unsettled * w)),
    )
    share = (new + refresh) / study.quota.daily_requests
    rows.append(
        (
            "to stay current",
            f"~{new + refresh:,} requests a day ({new:,} new, {refresh:,} refreshing "
            f"{unsettled} unsettled windows), {share:.0%} of the daily quota",
        )
    )
    if new + refresh > study.quota.daily_requests:
        warnings.append(
            f"keeping the study current needs ~{new + refresh:,} requests a day, more than the "
            f"{study.quota.daily_requests:,} of the quota: new windows go first and refreshes "
            "fall behind; lower settle_days or narrow the query"
        )
    return UpkeepPlan(info, rows, warnings)
