"""What the simulator counts: per-endpoint statistics, the daily quota and the short-term limit.

Benchmarks read the statistics to know how much quota a harvest spent, so every call that the
real API would count is counted here, failed and faulted ones included.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict, deque
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from harvester.simulator.clock import Clock

__all__ = ["QuotaLedger", "QuotaVerdict", "RateWindow", "Stats"]


class Stats:
    """Live counters; `snapshot()` is the JSON served at /_sim/stats."""

    def __init__(self) -> None:
        self.responses: defaultdict[str, Counter[int]] = defaultdict(Counter)
        self.faults: Counter[str] = Counter()
        self.records_delivered = 0
        self.tokens_issued = 0
        self.tasks_created = 0
        self.searches_started = 0

    def response(self, endpoint: str, status: int) -> None:
        self.responses[endpoint][status] += 1

    def requests_to(self, endpoint: str) -> int:
        return sum(self.responses[endpoint].values())

    def snapshot(self, ledger: QuotaLedger | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "responses": {
                ep: {str(s): n for s, n in sorted(c.items())}
                for ep, c in sorted(self.responses.items())
            },
            "faults": dict(sorted(self.faults.items())),
            "records_delivered": self.records_delivered,
            "tokens_issued": self.tokens_issued,
            "tasks_created": self.tasks_created,
            "searches_started": self.searches_started,
        }
        if ledger is not None:
            out["quota"] = ledger.snapshot()
        return out


@dataclass(frozen=True, slots=True)
class QuotaVerdict:
    """Why a call is refused for quota: `requests` or `records`, or None when it may go on."""

    exhausted: str | None


class QuotaLedger:
    """Requests and records per UTC day of the clock, with the post-midnight grace."""

    def __init__(self, clock: Clock, daily_requests: int, daily_records: int, grace: float) -> None:
        self.clock = clock
        self.daily_requests = daily_requests
        self.daily_records = daily_records
        self.grace = grace
        self.requests: Counter[str] = Counter()
        self.records: Counter[str] = Counter()

    def _spent(self, day: str) -> str | None:
        if self.requests[day] >= self.daily_requests:
            return "requests"
        if self.records[day] >= self.daily_records:
            return "records"
        return None

    def check(self) -> QuotaVerdict:
        today = self.clock.today()
        spent = self._spent(today.isoformat())
        if spent is None and self.grace > 0 and self.clock.seconds_into_day() < self.grace:
            # The real API has been seen to keep refusing for a while after 00:00 UTC.
            spent = self._spent((today - timedelta(days=1)).isoformat())
        return QuotaVerdict(spent)

    def count_request(self) -> None:
        self.requests[self.clock.today().isoformat()] += 1

    def count_records(self, n: int) -> None:
        self.records[self.clock.today().isoformat()] += n

    def records_left(self) -> int:
        return max(0, self.daily_records - self.records[self.clock.today().isoformat()])

    def snapshot(self) -> dict[str, Any]:
        days = sorted(set(self.requests) | set(self.records))
        return {
            "daily_requests": self.daily_requests,
            "daily_records": self.daily_records,
            "days": {d: {"requests": self.requests[d], "records": self.records[d]} for d in days},
            "today": self.clock.today().isoformat(),
        }


class RateWindow:
    """A sliding one-minute window: at most `per_minute` calls in any 60 s."""

    def __init__(self, clock: Clock, per_minute: int) -> None:
        self.clock = clock
        self.per_minute = per_minute
        self._calls: deque[float] = deque()

    def admit(self) -> float | None:
        """None if the call may go on (and is recorded), else seconds until it may."""
        now = self.clock.monotonic()
        calls = self._calls
        while calls and calls[0] <= now - 60.0:
            calls.popleft()
        if len(calls) >= self.per_minute:
            return max(1.0, math.ceil(calls[0] + 60.0 - now))
        calls.append(now)
        return None
