"""A clock tests can move forward: quota days, token expiry, task durations and result expiry
all read it, so a test can cross midnight or expire a result without waiting."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

__all__ = ["Clock"]


class Clock:
    """Real time plus an offset. `advance` moves both the wall and the monotonic reading."""

    __slots__ = ("_offset", "_wall_shift")

    def __init__(self, start: float | None = None) -> None:
        self._offset = 0.0
        self._wall_shift = 0.0 if start is None else start - time.time()

    def now(self) -> float:
        """Wall-clock epoch seconds (UTC)."""
        return time.time() + self._wall_shift + self._offset

    def monotonic(self) -> float:
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds

    def today(self) -> date:
        """The current UTC day: the quota's day."""
        return datetime.fromtimestamp(self.now(), UTC).date()

    def seconds_into_day(self) -> float:
        return self.now() % 86_400
