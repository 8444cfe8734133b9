"""The day's quota as a budget, and the queue of leaves waiting for it.

A study many times a day's quota is harvested a day at a time. What ruins it is starting more
windows than the day can finish: each spends the quota on its first pages, none completes, and
overnight their search ids expire. So a window is sized by pages (`WindowSizer`: one that would
need more than its share of a day is split before it starts), and started only if the requests
left today, after what the windows in flight still need, can finish it (`DayBudget`). The queue
(`LeafQueue`) hands out the first waiting leaf that fits, windows already begun first; near the
day's end small windows fill what the big ones cannot use.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from harvester.plan import DAY, PRIOR_RECORDS_PER_DAY, REST_PAGE, RQS_PAGE

if TYPE_CHECKING:
    from harvester.config import Study
    from harvester.plan import Plan

__all__ = [
    "DayBudget",
    "DayOver",
    "LeafQueue",
    "Need",
    "QuotaDays",
    "WindowSizer",
    "quota_day_forecast",
    "window_sizer",
]

#: Waiting leaves looked at past the head of the queue for one that fits the day's budget.
SCAN = 2_000
#: A window starts only if the day can finish it with this margin: a quarter of its estimate
#: plus a twentieth of the day's requests. A day's records vary around the study's mean (one
#: busy day can hold several days' worth), and a window the day cannot finish is paged again
#: tomorrow, its search id expired. Measured on the simulator's year (docs/benchmarks.md).
MARGIN = 1.25
MARGIN_OF_DAY = 0.05


class DayOver(Exception):
    """Nothing waiting fits what is left of the day, and nothing runs that could free any."""


@dataclass(frozen=True, slots=True)
class Need:
    """Requests and records a leaf is expected to cost from where it stands."""

    requests: int
    records: int

    def fits(self, free: Need) -> bool:
        return self.requests <= free.requests and self.records <= free.records


class WindowSizer:
    """A window's expected pages from this study's records per day: observed once a day's worth
    of windows has finished, before that the study's `expected_records_per_day` or the prior."""

    def __init__(
        self,
        *,
        rest: bool,
        prior: float | None,
        daily_requests: int,
        daily_records: int,
        concurrency: int,
        fraction: float,
    ) -> None:
        self.rest = rest
        self.page = REST_PAGE if rest else RQS_PAGE
        self.prior = float(PRIOR_RECORDS_PER_DAY if prior is None else prior)
        #: The study said how many records a day to expect (else the prior is a guess).
        self.stated = prior is not None
        self.day = Need(daily_requests, daily_records)
        self._records = 0
        self._seconds = 0
        # One window's share of a day: `concurrency` windows in flight at once all finish
        # within the day even when the estimate is off by the rest of the fraction.
        share = fraction / max(1, concurrency)
        self.share = Need(
            max(1, math.floor(daily_requests * share)), max(1, math.floor(daily_records * share))
        )

    def observe(self, records: int, seconds: int) -> None:
        self._records += records
        self._seconds += seconds

    @property
    def observed(self) -> bool:
        return self._seconds >= DAY

    @property
    def known(self) -> bool:
        """Whether the records per day are observed or stated, not the built-in guess: a day
        is cut by value only then (its sub-queries cost a request each, however few records
        they find)."""
        return self.observed or self.stated

    @property
    def records_per_day(self) -> float:
        return self._records * DAY / self._seconds if self.observed else self.prior

    def need(self, seconds: int, pages_done: int = 0, records_done: int = 0) -> Need:
        records = self.records_per_day * seconds / DAY
        pages = max(1, math.ceil(records / self.page)) + (0 if self.rest else 1)  # RQS: create
        return Need(max(1, pages - pages_done), max(0, round(records) - records_done))

    def padded(self, need: Need) -> Need:
        """What a window is admitted against, and held while in flight."""
        return Need(
            math.ceil(need.requests * MARGIN + self.day.requests * MARGIN_OF_DAY),
            math.ceil(need.records * MARGIN + self.day.records * MARGIN_OF_DAY),
        )

    def too_big(self, seconds: int) -> bool:
        return not self.need(seconds).fits(self.share)

    def window_days(self) -> int:
        """The longest whole-day window that fits one share (at least one day)."""
        rate = max(self.records_per_day, 1e-9)
        by_pages = (self.share.requests - (0 if self.rest else 1)) * self.page / rate
        by_records = self.share.records / rate
        return max(1, math.floor(min(by_pages, by_records)))


def window_sizer(study: Study, *, prior: float | None = None) -> WindowSizer:
    quota = study.quota
    return WindowSizer(
        rest=study.source == "research-api",
        prior=study.expected_records_per_day if prior is None else prior,
        daily_requests=quota.study_requests,
        daily_records=quota.study_records,
        concurrency=study.api.max_concurrency,
        fraction=quota.window_fraction,
    )


@dataclass(frozen=True, slots=True)
class QuotaDays:
    """What `plan` says of a study against its daily quota."""

    minimum: float
    forecast: float
    minimum_requests: int
    minimum_records: int
    window_days: int
    #: One line saying why the study cannot be harvested completely, or "".
    impossible: str


def quota_day_forecast(study: Study, records_per_day: float, plan: Plan) -> QuotaDays:
    """The fewest quota-days the study's records need (full pages over its planned windows, no
    page twice), and the forecast with windows sized to a share of the day."""
    sizer = window_sizer(study, prior=records_per_day)
    quota = study.quota
    days_total = (plan.end - plan.start) / DAY
    records = round(records_per_day * days_total)
    extra = 0 if sizer.rest else 1
    minimum_requests = sum(
        max(1, math.ceil(records_per_day * s.window.days / sizer.page)) + extra for s in plan
    )
    minimum = max(minimum_requests / quota.study_requests, records / quota.study_records)
    k = min(sizer.window_days(), plan.window_days)
    pieces = math.ceil(days_total / k)
    per_piece = max(1, math.ceil(records_per_day * k / sizer.page)) + extra
    # A piece a day fills the day's end: about half a page more each.
    requests = pieces * per_piece + math.ceil(minimum)
    forecast = max(requests / quota.study_requests, records / quota.study_records)
    one_day = sizer.need(DAY)
    impossible = ""
    if not one_day.fits(sizer.day):
        impossible = _one_day_too_big(study, one_day, records_per_day)
    return QuotaDays(minimum, forecast, minimum_requests, records, k, impossible)


def _one_day_too_big(study: Study, one_day: Need, records_per_day: float) -> str:
    """Why a day too big for a day's quota cannot be harvested, or "" when cutting it by the
    values of the query's IN list brings each value's share within a day."""
    quota = study.quota
    split = study.value_split if study.source == "research-api" else None
    what = (
        f"{study.name}: one day of this query needs about {one_day.requests:,} requests "
        f"({round(records_per_day):,} records), more than a day's quota of "
        f"{quota.study_requests:,}"
    )
    if split is None:
        return (
            f"{what}, and the query has no IN list (region_code, username, hashtag_name) to "
            "harvest a day value by value: it cannot be harvested completely; add such a list "
            "or narrow the query, or raise [quota] daily_requests"
        )
    sizer = window_sizer(study, prior=records_per_day)
    if sizer.need(DAY // len(split.values)).fits(sizer.day):
        return ""
    field = split.condition.field_name
    return (
        f"{what}, even cut by its {len(split.values)} values of {field}: it cannot be "
        f"harvested completely; list more, narrower values of {field}, or raise [quota] "
        "daily_requests"
    )


class DayBudget:
    """Requests and records left today, less what the windows in flight still need."""

    def __init__(self, left: Callable[[], Need]) -> None:
        self._left = left
        self._held: dict[str, Need] = {}

    @property
    def in_flight(self) -> int:
        return len(self._held)

    def free(self) -> Need:
        left = self._left()
        return Need(
            left.requests - sum(n.requests for n in self._held.values()),
            left.records - sum(n.records for n in self._held.values()),
        )

    def hold(self, key: str, need: Need) -> None:
        self._held[key] = need

    def page(self, key: str, records: int) -> None:
        """A page of a leaf in flight arrived: it needs one request and `records` less."""
        held = self._held.get(key)
        if held is not None:
            self._held[key] = Need(max(0, held.requests - 1), max(0, held.records - records))

    def release(self, key: str) -> None:
        self._held.pop(key, None)


class LeafQueue:
    """The leaves waiting to run, and the count of leaves not yet finished, in one object.

    `take` hands out the first waiting leaf the chooser accepts (past the head too, so a small
    window can use what a big one cannot). When none fits it waits for a change (a leaf finished
    or came back), or raises `DayOver` when nothing runs that could free any budget. None means
    every leaf is finished (or the run is stopping).
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self._waiting: deque[str] = deque(keys)
        self.outstanding = len(self._waiting)
        self.running = 0  # taken and not finished, or away until retried
        self._changed = anyio.Event()
        self.closed = False

    def __len__(self) -> int:
        return len(self._waiting)

    def waiting(self) -> list[str]:
        return list(self._waiting)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def add(self, keys: Iterable[str], *, front: bool = False) -> None:
        """New leaves (the halves of a split). A window cut to fit the day goes `front`, its
        first piece next; the halves of a failing window go to the back: the server's runs of
        500s pass while other windows are fetched."""
        keys = list(keys)
        self.outstanding += len(keys)
        if front:
            self._waiting.extendleft(reversed(keys))
        else:
            self._waiting.extend(keys)
        self._notify()

    def back(self, key: str) -> None:
        """A leaf taken earlier waits again (retried later, or it did not fit after all)."""
        self.running -= 1
        self._waiting.append(key)
        self._notify()

    def finished(self) -> None:
        """A taken leaf is done with: done, split into new leaves, or parked."""
        self.running -= 1
        self.outstanding -= 1
        if self.outstanding <= 0:
            self.closed = True
        self._notify()

    def close(self) -> None:
        self.closed = True
        self._notify()

    def wake(self) -> None:
        self._notify()

    async def take(self, chooser: Callable[[], Callable[[str], bool]]) -> str | None:
        # A stopping run must not start a leaf: without this, a leaf ready at once would be
        # marked running before the next await noticed the cancellation.
        await anyio.lowlevel.checkpoint_if_cancelled()
        while not self.closed:
            choose = chooser()
            for i, key in enumerate(self._waiting):
                if i >= SCAN:
                    break
                if choose(key):
                    del self._waiting[i]
                    self.running += 1
                    self._notify()  # another worker may find a leaf in what is left
                    return key
            if self.running == 0 and self._waiting:
                raise DayOver
            await self._changed.wait()
        return None
