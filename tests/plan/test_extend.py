"""A plan that moves with relative dates only adds to what is planned, never overlaps it."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from harvester.config import loads_study
from harvester.plan import DAY, Window, extend_plan, plan_study, plan_windows
from tests.test_config import toml


def days(first: date, last: date, n: int) -> list[Window]:
    return plan_windows(first, last, n)


def test_a_later_end_completes_the_short_last_window_and_adds_the_rest() -> None:
    before = days(date(2024, 1, 1), date(2024, 1, 9), 7)  # 7 days, then 2
    after = days(date(2024, 1, 1), date(2024, 1, 20), 7)
    add, supersede = extend_plan(before, after)
    assert supersede == [(before[1], after[1])]
    assert add == [after[2]]


def test_nothing_is_planned_twice() -> None:
    planned = days(date(2024, 1, 1), date(2024, 1, 14), 7)
    assert extend_plan(planned, planned) == ([], [])
    # A start that moved later (a relative start): its cut first window is already covered.
    moved = [Window(planned[0].start + 2 * DAY, planned[0].end), planned[1]]
    assert extend_plan(planned, moved) == ([], [])
    # Windows beside a gap are cut to the gap.
    wanted = [Window(planned[0].start - 3 * DAY, planned[0].start + DAY)]
    add, _ = extend_plan(planned, wanted)
    assert add == [Window(planned[0].start - 3 * DAY, planned[0].start)]


def test_a_relative_start_keeps_windows_on_a_calendar_grid(tmp_path: Path) -> None:
    text = toml(study__start_date='"today-20d"', study__end_date='"today"')
    one = plan_study(loads_study(text, tmp_path / "s.toml", today=date(2024, 3, 10)))
    two = plan_study(loads_study(text, tmp_path / "s.toml", today=date(2024, 3, 11)))
    # Every window but the first (cut by the start) and the last (cut by the end) is shared.
    shared = {s.key for s in one.shards[1:-1]}
    assert shared <= {s.key for s in two.shards}
    assert all(s.window.start % (7 * DAY) == 0 for s in one.shards[1:])
