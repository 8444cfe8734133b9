"""A study many times a day's quota, run as a scheduler runs it: until exit 75, then again the
next UTC day. Windows are sized by pages and started only when the day can finish them, so the
study completes, exact, in about the fewest quota-days and requests any client could use, even
though search ids do not survive the night."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from harvester.orchestrator import EXIT_OK, status_report
from harvester.plan import plan_study
from harvester.simulator.testing import running_simulator
from tests.orchestrator.conftest import (
    SIM,
    assert_equals_oracle,
    cli,
    harvest_day_by_day,
    make_study,
    study_period,
    study_text,
    successful_queries,
)

pytestmark = pytest.mark.anyio
REGIONS = [
    *("US", "NL", "DE", "GB", "FR", "ES", "IT", "BE", "PL", "SE"),
    *("BR", "MX", "JP", "IN", "TR", "ID", "AU", "NG", "EG"),
]
#: Every simulated region: ~360 matching videos a day on average, some days several times more.
EVERYWHERE: list[dict[str, Any]] = [
    {
        "operator": "and",
        "conditions": [{"field": "region_code", "operator": "in", "field_values": REGIONS}],
    }
]
DAYS = 240
FRACTION = 0.5
QUOTA = 100  # requests a day; a 30-day window needs ~110 pages


@pytest.mark.slow
async def test_a_study_far_above_a_days_quota_completes_in_the_fewest_days(
    tmp_path: Path,
) -> None:
    settings = {**SIM, "videos_per_day": 320, "daily_requests": QUOTA, "search_ttl": 3_600.0}
    async with running_simulator("clean", **settings) as sim:
        study = make_study(
            tmp_path, sim.base_url, source="research-api", days=DAYS, window=30,
            groups=EVERYWHERE, daily_requests=QUOTA, on_exhausted="exit", max_concurrency=1,
            fields=("id", "create_time", "region_code"), window_fraction=FRACTION,
        )  # fmt: skip
        truth = sim.oracle(EVERYWHERE, *study_period(study))
        # The fewest requests any client could make: full pages over the study's windows.
        minimum_requests = sum(
            math.ceil(len(sim.oracle(EVERYWHERE, s.window.start, s.window.end)) / 100)
            for s in plan_study(study)
        )
        minimum_days = math.ceil(minimum_requests / QUOTA)
        codes = await harvest_day_by_day(sim, study, max_days=2 * minimum_days)
        used = successful_queries(sim)
        charged = sum(d["requests"] for d in sim.ledger.snapshot()["days"].values())
        days = len(codes)
        report = status_report(study, now=sim.clock.now())
    assert codes[-1] == EXIT_OK, codes
    assert_equals_oracle(study, truth)
    # Quota-days: what the study charged to the quota, in days of it (the last day part-used).
    quota_days, minimum_quota_days = charged / QUOTA, minimum_requests / QUOTA
    print(
        f"{len(truth)} records: {quota_days:.2f} quota-days ({days} calendar days) for a minimum "
        f"of {minimum_quota_days:.2f} ({minimum_days}); {used} successful requests for a "
        f"minimum of {minimum_requests}"
    )
    assert quota_days <= 1.05 * minimum_quota_days
    assert used <= 1.05 * minimum_requests
    # Whole days: a day's last requests go unused when no window piece fits them.
    assert days <= minimum_days + 1
    assert report["complete"]
    # `status` sets the days used against the study's minimum (from what was observed).
    assert report["quota_days_used"] == days
    assert abs(report["minimum_quota_days"] - minimum_quota_days) <= 0.05 * minimum_quota_days


def test_plan_shows_the_fewest_quota_days_and_its_forecast(tmp_path: Path) -> None:
    text = study_text(
        "http://127.0.0.1:9", source="research-api", days=360, window=30, groups=EVERYWHERE,
        daily_requests=100, max_concurrency=1,
    ).replace("[study]\n", "[study]\nexpected_records_per_day = 360\n")  # fmt: skip
    (tmp_path / "study.toml").write_text(text)
    out = cli("plan", str(tmp_path / "study.toml"), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    # 12 windows of 30 days, 10,800 records each: 108 full pages each.
    assert report["minimum_requests"] == 12 * 108
    assert report["minimum_quota_days"] == 12.96
    assert report["minimum_quota_days"] <= report["forecast_quota_days"] <= 1.1 * 12.96
    # A window may need half a day's 100 requests: 50 pages, 13 days of 360 records.
    assert report["window_days_chosen"] == 13
    text_out = cli("plan", str(tmp_path / "study.toml")).stdout
    assert "minimum" in text_out and "forecast" in text_out
