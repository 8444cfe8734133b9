"""The quota ledger the API layer reports to, and the gate that holds workers at 00:00 UTC.

Quota is the scarcest thing a study has: every counted call is reserved in the state store
before it is sent (so two runs, or two machines, sharing a team's quota never overspend it) and
the records it delivered are settled after.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import anyio
import structlog

from harvester._exceptions import QuotaExhausted, QuotaSpent
from harvester.plan import DAY
from harvester.state import StateStore, Usage, utc_day

log = structlog.get_logger("harvester.quota")

#: After 00:00 UTC the API has been seen to say "quota exceeded" for a while: retry this often.
RESET_GRACE_RETRY = 300.0

#: The UTC day the current task's last counted call was reserved on. A call sent at 23:59:59
#: may be answered after 00:00: its records, and a "quota exceeded" it got, belong to the day
#: it was sent, not to the day its answer is read, or the new day would be marked spent and
#: the run would wait a whole day with the quota back. (A task makes one call at a time.)
_call_day: ContextVar[str | None] = ContextVar("harvester_call_day", default=None)


def day_start(day: str) -> float:
    """00:00 UTC of a ledger day (`YYYY-MM-DD`), in epoch seconds."""
    return datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()


@dataclass(slots=True)
class RunStats:
    """Counters for the progress display and the end-of-run summary (this run only)."""

    started: float = 0.0
    requests: int = 0
    records: int = 0
    #: Records the public API returned that the study's exact query dropped.
    filtered: int = 0
    pages: int = 0
    splits: int = 0
    parked: int = 0
    plan_total: int = 0
    plan_committed: int = 0
    plan_committed_this_run: int = 0
    #: Windows harvested again because their counts had not settled, and the rows they hold now.
    refreshing: int = 0
    refreshed_rows: int = 0
    superseded_rows: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    quota_wait_until: float | None = None


class DailyPool(Protocol):
    """A daily quota ledger in the state: the study's (a store), or a pool of its own."""

    def reserve(self, day: str, requests: int = 1, *, cap: int | None = None) -> bool: ...

    def settle(self, day: str, *, records: int) -> None: ...

    def exhaust(self, day: str) -> None: ...

    def usage(self, day: str) -> Usage: ...


class QuotaLedger:
    """`RequestHooks` for the API session, backed by the state store's ledger (or by `pool`,
    a ledger of its own in the same state, named `what` in messages)."""

    def __init__(
        self,
        state: StateStore,
        *,
        daily_requests: int,
        daily_records: int,
        clock: Callable[[], float],
        stats: RunStats,
        pool: DailyPool | None = None,
        what: str = "daily quota",
    ) -> None:
        self._state = state
        self._pool: DailyPool = state if pool is None else pool
        self.daily_requests = daily_requests
        self.daily_records = daily_records
        self.what = what
        self._clock = clock
        self._stats = stats
        #: The UTC day of the last counted call the API answered: tells a spent day apart from
        #: a reset that lags after 00:00.
        self.last_served_day: str | None = None

    def today(self) -> str:
        return utc_day(self._clock())

    def call_day(self) -> str:
        """The day of this task's last counted call (today if it made none)."""
        return _call_day.get() or self.today()

    def for_pool(
        self, pool: DailyPool, *, daily_requests: int, daily_records: int, what: str
    ) -> QuotaLedger:
        """The run's ledger for a pool of its own (the followers lists'): its calls are dated
        by the same rule, and counted in the same run."""
        return QuotaLedger(
            self._state,
            daily_requests=daily_requests,
            daily_records=daily_records,
            clock=self._clock,
            stats=self._stats,
            pool=pool,
            what=what,
        )

    def gate(self) -> QuotaGate:
        """Where this ledger's callers wait for its quota to come back."""
        return QuotaGate(self, self._clock, self._stats)

    async def reserve(self, endpoint: str) -> None:
        day = self.today()
        _call_day.set(day)
        if not self._pool.reserve(day, 1, cap=self.daily_requests):
            used = self._pool.usage(day)
            what = (
                f"{used.records:,} of {self.daily_records:,} records"
                if used.records >= self.daily_records
                else f"{used.requests:,} of {self.daily_requests:,} requests"
            )
            raise QuotaSpent(f"the {self.what} for {day} (UTC) is spent: {what}")
        self._stats.requests += 1

    def settle(self, endpoint: str, *, ok: bool, records: int) -> None:
        day = self.call_day()
        if ok:
            self.last_served_day = max(self.last_served_day or day, day)
        if records:
            self._pool.settle(day, records=records)

    def on_retry(self, kind: str, attempt: int, delay: float) -> None:
        self._stats.retries[kind] += 1

    def on_error(self, kind: str) -> None:
        self._stats.errors[kind] += 1
        self._state.record_error(kind)

    def exhausted(self, day: str) -> None:
        """The API said `day`'s quota is spent: no more reservations until its 00:00 UTC."""
        self._pool.exhaust(day)


class QuotaGate:
    """Where workers wait for the quota to come back, with a countdown in the log."""

    def __init__(self, ledger: QuotaLedger, clock: Callable[[], float], stats: RunStats) -> None:
        self._ledger = ledger
        self._clock = clock
        self._stats = stats
        self._last_exhausted_day: str | None = None

    def record(self, exc: QuotaExhausted, day: str | None = None) -> None:
        """Remember the API's "quota spent" for the day the refused call was sent (`day`, by
        default this task's last call), so no worker (nor the next run, on the same day) sends
        a call the API would refuse and still count."""
        if not isinstance(exc, QuotaSpent):
            self._ledger.exhausted(day or self._ledger.call_day())

    async def wait(self, exc: QuotaExhausted, day: str | None = None) -> None:
        """Wait until the quota of `day` (by default the day of this task's refused call) is
        back: its next 00:00 UTC, or shortly when the API's reset lags after 00:00."""
        now = self._clock()
        day = day or self._ledger.call_day()
        self.record(exc, day)
        if day < utc_day(now):
            # Refused on a day already over (its answer was read after 00:00): the quota is back.
            log.info("quota_resumed", day=utc_day(now))
            return
        lagging = (
            not isinstance(exc, QuotaSpent)
            and self._last_exhausted_day not in (None, day)
            and self._ledger.last_served_day != day
        )
        # A new day, yet the API says no before answering a single call: its reset lags; try
        # again shortly. A day spent by our own ledger, or after calls went through today, is
        # spent for real: wait for the next 00:00.
        until = now + RESET_GRACE_RETRY if lagging else day_start(day) + DAY + 1
        self._last_exhausted_day = day
        self._stats.quota_wait_until = until
        log.warning("quota_wait", day=day, until=until, seconds=round(until - now), reason=str(exc))
        # Poll the clock rather than sleep once: a test's clock (or a suspended laptop) moves.
        while (left := until - self._clock()) > 0:  # noqa: ASYNC110 - nothing to wait on
            await anyio.sleep(min(left, 1.0))
        if self._stats.quota_wait_until == until:
            # Workers wait together: one that waits for a later 00:00 keeps its countdown shown.
            self._stats.quota_wait_until = None
        log.info("quota_resumed", day=utc_day(self._clock()))
