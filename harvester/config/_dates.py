"""When: the study's period (fixed or relative dates) and its window length."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from harvester.config._schema import Problem, StudyTable, shown
from harvester.query import MAX_REST_WINDOW_DAYS

_FIRST_DATE = date(2016, 1, 1)
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: `today`, `yesterday`, `today-3d` (UTC): resolved at every run.
_RELATIVE_RE = re.compile(r"\s*(today|yesterday)\s*(?:-\s*([0-9]{1,5})\s*d)?\s*")
#: `window = "7d"`: a whole number of days.
_WINDOW_RE = re.compile(r"([0-9]{1,5})d")
#: The longest window an RQS task may cover (the public API's is MAX_REST_WINDOW_DAYS).
_MAX_RQS_WINDOW_DAYS = 3660


@dataclass(frozen=True, slots=True)
class Period:
    start: date
    end: date
    window_days: int
    #: The dates as written when relative (`"today-3d"`), None for a fixed date.
    start_rule: str | None
    end_rule: str | None


def period(s: StudyTable, today: date) -> Period:
    """The study's dates, resolved against `today`, and its window length."""
    start, start_rule = _when("study.start_date", s.start_date, today)
    end, end_rule = _when("study.end_date", s.end_date, today)
    if end < start:
        raise Problem("study.end_date", f"{end} is before start_date {start}", "swap the dates")
    return Period(start, end, _window_days(s), start_rule, end_rule)


def _when(key: str, value: object, today: date) -> tuple[date, str | None]:
    relative = _relative(key, value, today)
    return relative if relative is not None else (_date(key, value), None)


def _window_days(s: StudyTable) -> int:
    most = MAX_REST_WINDOW_DAYS if s.source == "research-api" else _MAX_RQS_WINDOW_DAYS
    try:
        window_days = parse_window(s.window)
        if window_days > most:
            raise ValueError
    except ValueError:
        raise Problem(
            "study.window",
            f"{shown(s.window)} is not a window",
            f'use a whole number of days from 1 to {most} like "7d"',
        ) from None
    return window_days


def parse_window(text: str) -> int:
    """`"7d"` → 7. ValueError unless `text` is a positive whole number of days plus `d`."""
    m = _WINDOW_RE.fullmatch(text)
    if m is None or int(m[1]) < 1:
        raise ValueError(f"{text!r} is not a window")
    return int(m[1])


def _relative(key: str, value: object, today: date) -> tuple[date, str] | None:
    """A relative date and its normalised rule, or None for anything else."""
    if not isinstance(value, str):
        return None
    m = _RELATIVE_RE.fullmatch(value.lower())
    if m is None:
        if value.strip().lower().startswith(("today", "yesterday")):
            raise Problem(
                key,
                f"{shown(value)} is not a relative date",
                'write "today", "yesterday" or "today-7d" (days before today, UTC)',
            )
        return None
    back = (1 if m[1] == "yesterday" else 0) + int(m[2] or 0)
    rule = "today" if back == 0 else f"today-{back}d"
    return today - timedelta(days=back), rule


def _date(key: str, value: object) -> date:
    if isinstance(value, datetime):
        raise Problem(key, f"{value} has a time of day", "give a date only, like 2023-01-01")
    if isinstance(value, date):
        parsed = value
    elif isinstance(value, str) and _DATE_RE.fullmatch(value):
        try:
            parsed = date.fromisoformat(value)
        except ValueError:
            problem = f"{shown(value)} is not a calendar date"
            raise Problem(key, problem, "fix the day or month") from None
    else:
        raise Problem(
            key,
            f"{shown(value)} is not a date",
            'write it as "YYYY-MM-DD", or relative: "today", "yesterday", "today-7d"',
        )
    if parsed < _FIRST_DATE:
        raise Problem(key, f"{parsed} is before TikTok existed", "use a date from 2016 on")
    return parsed
