"""Dates, the window length and settling in the study file: relative dates resolved at every
run, their rule fingerprinted."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from harvester import ConfigError
from harvester.config import Study, loads_study
from harvester.config._dates import parse_window
from tests.test_config import toml

TODAY = date(2024, 3, 10)


def load(tmp_path: Path, text: str, today: date = TODAY) -> Study:
    return loads_study(text, tmp_path / "study.toml", today=today)


@pytest.mark.parametrize(
    ("written", "resolved", "rule"),
    [
        ('"today"', date(2024, 3, 10), "today"),
        ('"yesterday"', date(2024, 3, 9), "today-1d"),
        ('"today-7d"', date(2024, 3, 3), "today-7d"),
        ('"Today - 2d"', date(2024, 3, 8), "today-2d"),
        ('"yesterday-1d"', date(2024, 3, 8), "today-2d"),
    ],
)
def test_relative_end_dates_resolve_against_the_utc_day(
    tmp_path: Path, written: str, resolved: date, rule: str
) -> None:
    study = load(tmp_path, toml(study__end_date=written))
    assert study.end_date == resolved and study.end_rule == rule and study.relative
    assert study.start_rule is None


def test_a_moving_date_keeps_the_fingerprint_a_changed_rule_does_not(tmp_path: Path) -> None:
    text = toml(study__end_date='"yesterday"')
    monday, tuesday = load(tmp_path, text), load(tmp_path, text, date(2024, 3, 11))
    assert monday.end_date != tuesday.end_date
    assert monday.plan_fingerprint() == tuesday.plan_fingerprint()  # no --replan needed
    other = load(tmp_path, toml(study__end_date='"today"'))
    assert other.fingerprint() != monday.fingerprint()
    fixed = load(tmp_path, toml(study__end_date='"2024-03-09"'))
    assert fixed.end_date == monday.end_date and fixed.fingerprint() != monday.fingerprint()


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("study__end_date", '"today+1d"', "is not a relative date"),
        ("study__end_date", '"todayy"', "is not a relative date"),
        ("study__start_date", '"last week"', "relative"),
        ("study__settle_days", "-1", "settle_days"),
    ],
)
def test_bad_relative_dates_and_settle_days_are_one_clear_line(
    tmp_path: Path, key: str, value: str, needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle) as info:
        load(tmp_path, toml(**{key: value}))
    assert "\n" not in str(info.value)


def test_a_relative_start_after_the_end_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="before start_date"):
        load(tmp_path, toml(study__start_date='"today"', study__end_date='"2024-01-01"'))


def test_settle_days_and_history_defaults(tmp_path: Path) -> None:
    study = load(tmp_path, toml())
    assert study.settle_days == 10 and study.history_path is None
    kept = load(tmp_path, toml(study__settle_days="0", output__history="true"))
    assert kept.settle_days == 0
    assert kept.history_path == (tmp_path / "out" / "t.history").resolve()


@pytest.mark.parametrize(("text", "days"), [("1d", 1), ("7d", 7), ("30d", 30), ("365d", 365)])
def test_parse_window(text: str, days: int) -> None:
    assert parse_window(text) == days


@pytest.mark.parametrize("text", ["0d", "7", "d", "1w", "7 d", "-1d", "1.5d", "7D", ""])
def test_parse_window_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_window(text)
