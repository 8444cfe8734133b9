"""Time windows: the half-open `[start, end)` spans of UTC epoch seconds that shards cover.

Every record belongs to exactly one window by its `create_time`, so windows must tile a study's
period with no gap and no overlap, and a split must tile its parent the same way. Arithmetic is
on integers (no datetime objects in the hot path) because a long study can have tens of
thousands of leaves.

Keys name a window stably and sort chronologically among windows of the same form:
`20230101-20230131` when both ends are midnight UTC, `20230101T120000-20230102T000000`
otherwise. **Both forms name the exclusive end**, exactly like the window itself:
`20230101-20230131` is `[2023-01-01 00:00, 2023-01-31 00:00)`, thirty days, the 31st not
included. One rule for both forms means a key never has to be read differently depending on
whether the window was split below a day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache

__all__ = [
    "DAY",
    "Window",
    "plan_windows",
]

DAY = 86_400
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _epoch_of(day: date) -> int:
    """Midnight UTC of `day` in epoch seconds."""
    return (day.toordinal() - _EPOCH_ORDINAL) * DAY


def _date_of(ts: int) -> date:
    """The UTC calendar date that second `ts` falls on."""
    return date.fromordinal(ts // DAY + _EPOCH_ORDINAL)


@lru_cache(maxsize=8192)
def _day_number_text(day: int) -> str:
    d = date.fromordinal(day + _EPOCH_ORDINAL)
    return f"{d.year:04d}{d.month:02d}{d.day:02d}"


def _day_text(ts: int) -> str:
    return _day_number_text(ts // DAY)


_TWO_DIGITS = tuple(f"{i:02d}" for i in range(100))


def _second_text(ts: int) -> str:
    day, rest = divmod(ts, DAY)
    two = _TWO_DIGITS
    return f"{_day_number_text(day)}T{two[rest // 3600]}{two[rest // 60 % 60]}{two[rest % 60]}"


@lru_cache(maxsize=8192)
def _parse_day(text: str) -> int:
    return _epoch_of(date(int(text[:4]), int(text[4:6]), int(text[6:8])))


@lru_cache(maxsize=8192)
def _parse_time(text: str) -> int:
    h, m, sec = int(text[:2]), int(text[2:4]), int(text[4:6])
    if h > 23 or m > 59 or sec > 59:
        raise ValueError(f"bad time of day {text!r}")
    return h * 3600 + m * 60 + sec


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """`[start, end)` in UTC epoch seconds; ordered by start, then end."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if type(self.start) is not int or type(self.end) is not int:
            raise TypeError(f"window ends must be ints, got {self.start!r}, {self.end!r}")
        if not 0 <= self.start < self.end:
            raise ValueError(f"empty or negative window [{self.start}, {self.end})")

    @classmethod
    def from_dates(cls, first: date, last: date) -> Window:
        """The whole days `first` … `last`, both included (how studies and the REST API count)."""
        return cls(_epoch_of(first), _epoch_of(last) + DAY)

    @classmethod
    def from_key(cls, key: str) -> Window:
        """Invert `key`; ValueError when `key` is not a window key."""
        # Slicing rather than a regex: state may hold tens of thousands of keys to read back.
        if key.isascii():
            if len(key) == 17 and key[8] == "-" and (key[:8] + key[9:]).isdigit():
                return cls(_parse_day(key[:8]), _parse_day(key[9:]))
            if len(key) == 31 and key[8] == key[24] == "T" and key[15] == "-":
                digits = key[:8] + key[9:15] + key[16:24] + key[25:]
                if digits.isdigit():
                    start = _parse_day(key[:8]) + _parse_time(key[9:15])
                    return cls(start, _parse_day(key[16:24]) + _parse_time(key[25:]))
        raise ValueError(f"{key!r} is not a window key")

    @property
    def key(self) -> str:
        if self.is_whole_days:
            return f"{_day_text(self.start)}-{_day_text(self.end)}"
        return f"{_second_text(self.start)}-{_second_text(self.end)}"

    @property
    def seconds(self) -> int:
        return self.end - self.start

    @property
    def days(self) -> float:
        """Length in days; a whole number for whole-day windows."""
        return (self.end - self.start) / DAY

    @property
    def is_whole_days(self) -> bool:
        return self.start % DAY == 0 and self.end % DAY == 0

    @property
    def start_date(self) -> date:
        """UTC date of the first second: the REST API's `start_date`."""
        return _date_of(self.start)

    @property
    def last_date(self) -> date:
        """UTC date of the last second: the REST API's inclusive `end_date`."""
        return _date_of(self.end - 1)

    def __contains__(self, ts: object) -> bool:
        return isinstance(ts, int) and self.start <= ts < self.end

    def halves(self) -> tuple[Window, Window]:
        """Split in two windows that tile this one.

        At least two days long: cut at the midnight nearest the middle, so the halves of a
        whole-day window stay whole days (the REST API cannot ask for less than a day).
        Shorter: cut at the middle second (the first half is the shorter by at most one).
        A one-second window cannot be split: ValueError.
        """
        span = self.end - self.start
        if span < 2:
            raise ValueError(f"window {self.key} is one second long and cannot be split")
        middle = self.start + span // 2
        if span >= 2 * DAY:
            cut = (middle + DAY // 2) // DAY * DAY
            if cut <= self.start:
                cut += DAY
            elif cut >= self.end:
                cut -= DAY
        else:
            cut = middle
        return Window(self.start, cut), Window(cut, self.end)

    def __str__(self) -> str:
        return self.key


def plan_windows(start_date: date, end_date_inclusive: date, days: int) -> list[Window]:
    """Tile the whole days `start_date` … `end_date_inclusive` with windows of `days` days.

    Windows start at `start_date` and follow each other without gap or overlap; the last one
    is shorter when the period is not a multiple of `days`.
    """
    if days < 1:
        raise ValueError(f"window length must be at least one day, got {days}")
    if end_date_inclusive < start_date:
        raise ValueError(f"end date {end_date_inclusive} is before start date {start_date}")
    start = _epoch_of(start_date)
    end = _epoch_of(end_date_inclusive) + DAY
    step = days * DAY
    return [Window(s, min(s + step, end)) for s in range(start, end, step)]
