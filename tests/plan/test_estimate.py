"""Plans and their estimates, offline and fast (harvester/plan/shards, estimate)."""

from __future__ import annotations

import dataclasses
import time
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harvester.config import Study, loads_study
from harvester.plan import (
    DAY,
    PRIOR_RECORDS_PER_DAY,
    Estimate,
    FinishedShard,
    Window,
    estimate_plan,
    plan_study,
)

STUDY = """
[study]
name = "p"
source = "{source}"
start_date = "2023-01-01"
end_date = "2023-03-31"
window = "{window}"
condition_groups = [{{operator = "and", conditions = [{{field = "region_code", operator = "eq", field_values = ["NL"]}}]}}]
[api]
base_url = "http://127.0.0.1:8765"
[output]
path = "out/p"
"""  # noqa: E501


def study(tmp_path: Path, source: str = "research-api", window: str = "7d", **kw: object) -> Study:
    loaded = loads_study(STUDY.format(source=source, window=window), tmp_path / "p.toml")
    return dataclasses.replace(loaded, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plan")


def test_plan_shards_follow_the_windows(base: Path) -> None:
    s = study(base)
    plan = plan_study(s)
    assert len(plan) == 13 and plan.window_days == 7
    assert plan.shards[0].key == "20230101-20230108"
    assert plan.shards[-1].key == "20230326-20230401"
    assert plan.start == Window.from_dates(date(2023, 1, 1), date(2023, 1, 1)).start
    assert plan.end - plan.start == 90 * DAY
    # A key names its window: a resumed run finds every shard by key alone.
    assert [sh.window for sh in plan] == [Window.from_key(sh.key) for sh in plan]


def test_public_api_cost_model(base: Path) -> None:
    s = study(base, expected_records_per_day=1000.0)
    e = estimate_plan(plan_study(s), s)
    # 12 full weeks of 7,000 records (70 pages) and a last window of 6 days (60 pages).
    assert (e.basis, e.requests, e.records) == ("configured", 12 * 70 + 60, 90_000)
    assert e.quota_days == pytest.approx(max(900 / 1000, 90_000 / 100_000))
    assert e.tasks == 0 and e.splits == 0 and e.shards_left == 13


def test_empty_windows_still_cost_a_request(base: Path) -> None:
    s = study(base, window="1d", expected_records_per_day=0.0)
    e = estimate_plan(plan_study(s), s)
    assert (e.requests, e.records) == (90, 0)


def test_rqs_cost_model_and_splits(base: Path) -> None:
    fits = study(base, source="rqs", expected_records_per_day=100.0)  # 700 a week, limit 1000
    e = estimate_plan(plan_study(fits), fits)
    assert (e.tasks, e.splits, e.requests) == (13, 0, 26)
    saturated = study(base, source="rqs", expected_records_per_day=1000.0)  # 7,000 a week
    e = estimate_plan(plan_study(saturated), saturated)
    # Each week needs 3 levels of halving: 7 saturated tasks and 8 leaves of 875 records.
    assert e.splits == 12 * 7 + 7  # the 6-day window: 6,000 → 8 leaves as well
    assert e.tasks == 13 * 15 and e.requests == 2 * e.tasks
    assert e.records == 90_000 + e.splits * 1000


def test_prior_when_nothing_is_known(base: Path) -> None:
    s = study(base)
    e = estimate_plan(plan_study(s), s)
    assert e.basis == "prior" and e.records_per_day == PRIOR_RECORDS_PER_DAY


def test_observed_shards_take_over(base: Path) -> None:
    s = study(base, expected_records_per_day=1000.0)
    plan = plan_study(s)
    done = [FinishedShard(sh.key, records=70, requests=3) for sh in plan.shards[:4]]
    stale = FinishedShard("20200101-20200108", records=10**9, requests=10**9)
    e = estimate_plan(plan, s, [*done, stale, done[0]])
    assert e.basis == "observed" and e.shards_done == 4 and e.shards_left == 9
    assert e.records_per_day == pytest.approx(10.0)
    assert e.records == 8 * 70 + 60
    assert e.requests == 8 * 3 + 3  # 3 per week, scaled: ceil(3 * 6/7) for the last


rates = st.floats(min_value=0, max_value=1e7, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(rates, rates, st.sampled_from(["research-api", "rqs"]), st.sampled_from(["1d", "7d", "30d"]))
def test_estimate_sanity(base: Path, r1: float, r2: float, source: str, window: str) -> None:
    lo, hi = sorted((r1, r2))
    s_lo = study(base, source=source, window=window, expected_records_per_day=lo)
    s_hi = dataclasses.replace(s_lo, expected_records_per_day=hi)
    plan = plan_study(s_lo)
    e_lo, e_hi = estimate_plan(plan, s_lo), estimate_plan(plan, s_hi)
    for e, s in ((e_lo, s_lo), (e_hi, s_hi)):
        assert isinstance(e, Estimate)
        assert e.requests >= len(plan)
        assert e.records >= round(e.records_per_day * 90) - len(plan)
        assert e.quota_days == max(
            e.requests / s.quota.daily_requests, e.records / s.quota.daily_records
        )
    assert e_hi.requests >= e_lo.requests and e_hi.records >= e_lo.records
    assert e_hi.quota_days >= e_lo.quota_days


def test_ten_years_plan_fast(base: Path) -> None:
    s = dataclasses.replace(
        study(base, window="1d"), start_date=date(2015, 1, 1), end_date=date(2024, 12, 30)
    )
    t0 = time.perf_counter()
    plan = plan_study(s)
    finished = [FinishedShard(sh.key, 100, 2) for sh in plan.shards[::2]]
    e = estimate_plan(plan, s, finished)
    # ...and a state that split the plan into 50,000 leaves.
    leaves: list[Window] = []
    for sh in plan.shards:
        a, b = sh.window.halves()
        parts = [*a.halves(), *b.halves()]
        leaves.extend(parts[: 14 if len(leaves) < 40_000 else 4])
    keys = {w.key for w in leaves}
    elapsed = time.perf_counter() - t0
    assert len(plan) == 3652 and e.shards_done == 1826
    assert len(leaves) >= 14_600 and len(keys) == len(leaves)
    assert elapsed < 1.0, f"planning took {elapsed:.2f}s"


def test_fifty_thousand_leaves_fast() -> None:
    start = Window.from_dates(date(2015, 1, 1), date(2024, 12, 31))
    t0 = time.perf_counter()
    leaves = [start]
    while len(leaves) < 50_000:
        leaves = [h for w in leaves for h in w.halves()]
    keys = [w.key for w in leaves]
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, f"50,000 leaves took {elapsed:.2f}s"
    assert [Window.from_key(k) for k in keys] == leaves and len(set(keys)) == len(keys) >= 50_000
