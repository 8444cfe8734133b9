"""Windows tile a study's period exactly, and their halves tile them (harvester/plan/windows)."""

from __future__ import annotations

import itertools
import random
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harvester.plan import DAY, Window, plan_windows
from harvester.plan.shards import split_window

dates = st.dates(min_value=date(2016, 1, 1), max_value=date(2035, 12, 31))
windows = st.builds(
    lambda start, length: Window(start, start + length),
    st.integers(0, 2**33),
    st.integers(1, 400 * DAY),
)


def assert_tiles(parts: list[Window], whole: Window) -> None:
    """No gap, no overlap, nothing outside `whole`."""
    assert parts[0].start == whole.start
    assert parts[-1].end == whole.end
    for a, b in itertools.pairwise(parts):
        assert a.end == b.start


@given(dates, st.integers(0, 4000), st.integers(1, 400))
def test_plan_covers_the_range_exactly(first: date, span: int, days: int) -> None:
    last = first + timedelta(days=span)
    planned = plan_windows(first, last, days)
    assert_tiles(planned, Window.from_dates(first, last))
    assert all(w.seconds == days * DAY for w in planned[:-1])
    assert 0 < planned[-1].seconds <= days * DAY
    assert all(w.is_whole_days for w in planned)
    assert len(planned) == -(-(span + 1) // days)
    keys = [w.key for w in planned]
    assert len(set(keys)) == len(keys) and keys == sorted(keys)
    assert [Window.from_key(k) for k in keys] == planned
    assert planned[0].start_date == first and planned[-1].last_date == last


@given(windows)
def test_halves_tile_the_window(w: Window) -> None:
    if w.seconds == 1:
        with pytest.raises(ValueError):
            w.halves()
        return
    a, b = w.halves()
    assert_tiles([a, b], w)
    if w.seconds >= 2 * DAY:
        assert b.start % DAY == 0  # the cut is at a midnight
        if w.is_whole_days:
            assert a.is_whole_days and b.is_whole_days
    else:
        assert abs(a.seconds - b.seconds) <= 1


@given(windows, st.randoms(use_true_random=False))
def test_halves_recursively_down_to_one_second(w: Window, rnd: random.Random) -> None:
    leaves = [w]
    # Split a random leaf until some leaf is one second long; coverage must hold all along.
    while min(x.seconds for x in leaves) > 1:
        i = (
            rnd.randrange(len(leaves))
            if rnd.random() < 0.2
            else min(range(len(leaves)), key=lambda j: leaves[j].seconds)
        )
        leaves[i : i + 1] = leaves[i].halves()
        assert_tiles(leaves, w)
    keys = [x.key for x in leaves]
    assert len(set(keys)) == len(keys)
    assert [Window.from_key(k) for k in keys] == leaves


@given(st.integers(0, 2**33), st.integers(1, 70))
def test_full_split_ends_in_seconds(start: int, length: int) -> None:
    w = Window(start, start + length)
    todo, leaves = [w], []
    while todo:
        x = todo.pop()
        if x.seconds == 1:
            leaves.append(x)
        else:
            todo.extend(x.halves())
    leaves.sort()
    assert len(leaves) == length
    assert_tiles(leaves, w)


@given(windows)
def test_keys_round_trip(w: Window) -> None:
    assert Window.from_key(w.key) == w
    assert ("T" in w.key) != w.is_whole_days
    assert w.start in w and (w.end - 1) in w and w.end not in w


def test_key_format_names_the_exclusive_end() -> None:
    january = Window.from_dates(date(2023, 1, 1), date(2023, 1, 31))
    assert january.key == "20230101-20230201"
    assert january.days == 31 and january.last_date == date(2023, 1, 31)
    assert Window.from_key("20230101-20230131").days == 30
    noon = Window(january.start + 12 * 3600, january.start + DAY)
    assert noon.key == "20230101T120000-20230102T000000"
    assert noon.start_date == noon.last_date == date(2023, 1, 1)


@pytest.mark.parametrize(
    "key",
    ["", "20230101", "2023010-20230102", "20230101T250000-20230102T000000", "20230102-20230101"],
)
def test_bad_keys(key: str) -> None:
    with pytest.raises(ValueError):
        Window.from_key(key)


def test_windows_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        Window(5, 5)
    with pytest.raises(TypeError):
        Window(0, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        plan_windows(date(2023, 1, 2), date(2023, 1, 1), 1)
    with pytest.raises(ValueError):
        plan_windows(date(2023, 1, 1), date(2023, 1, 1), 0)


def test_split_window_respects_the_minimum() -> None:
    two_days = Window.from_dates(date(2023, 1, 1), date(2023, 1, 2))
    halves = split_window(two_days, min_seconds=DAY)
    assert halves is not None and all(h.seconds == DAY for h in halves)
    assert split_window(halves[0], min_seconds=DAY) is None
    assert split_window(halves[0]) == halves[0].halves()
    assert split_window(Window(0, 1)) is None
