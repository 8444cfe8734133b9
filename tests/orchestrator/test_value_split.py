"""A day too big for a day's quota, cut by value: the study's IN list is harvested one value at a
time, each value's sub-query a leaf of the day, their union the day, every video once."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from harvester.config import load_study
from harvester.orchestrator import EXIT_OK, status_report
from harvester.simulator.app import Simulator
from harvester.simulator.testing import running_simulator
from harvester.state import SqliteState
from tests.orchestrator.conftest import (
    DAY,
    SIM,
    assert_equals_oracle,
    cli,
    counted_requests,
    harvest_day_by_day,
    make_study,
    study_period,
    study_text,
    successful_queries,
)

pytestmark = pytest.mark.anyio

REGIONS = ["US", "NL", "DE", "GB", "FR"]
BY_REGION: list[dict[str, Any]] = [
    {
        "operator": "and",
        "conditions": [{"field": "region_code", "operator": "in", "field_values": REGIONS}],
    }
]
#: Popular hashtags: many videos carry two or three of them, so the sub-queries overlap.
HASHTAGS = ["fyp", "foryou", "foryoupage", "tiktok"]
BY_HASHTAG: list[dict[str, Any]] = [
    {
        "operator": "and",
        "conditions": [
            {"field": "hashtag_names", "operator": "contains", "field_values": HASHTAGS}
        ],
    }
]
QUOTA = 10  # requests a day; one day of the query needs more than that


def _study(
    tmp_path: Path, sim: Simulator, groups: list[dict[str, Any]], days: int, expected: int | None
) -> Any:
    """The study; `expected` records a day as its author states them (as `plan` asks for a
    day too big for the quota), or none: the first day, fetched whole, tells."""
    make_study(
        tmp_path, sim.base_url, source="research-api", days=days, window=days, groups=groups,
        daily_requests=QUOTA, on_exhausted="exit", max_concurrency=1, window_fraction=0.5,
        fields=("id", "create_time", "region_code", "hashtag_names"),
    )  # fmt: skip
    path = tmp_path / "study.toml"
    if expected is not None:
        text = path.read_text()
        path.write_text(
            text.replace("[study]\n", f"[study]\nexpected_records_per_day = {expected}\n")
        )
    return load_study(path)


@pytest.mark.slow
async def test_a_day_above_a_days_quota_completes_region_by_region(tmp_path: Path) -> None:
    settings = {**SIM, "videos_per_day": 3_000, "daily_requests": QUOTA, "search_ttl": 3_600.0}
    async with running_simulator("clean", **settings) as sim:
        study = _study(tmp_path, sim, BY_REGION, days=4, expected=1_500)
        start, end = study_period(study)
        truth = sim.oracle(BY_REGION, start, end)
        days = [(s, s + DAY) for s in range(start, end, DAY)]
        # Each day alone needs more requests than a day's quota.
        per_day = [math.ceil(len(sim.oracle(BY_REGION, a, b)) / 100) for a, b in days]
        assert min(per_day) > QUOTA, per_day
        # The fewest requests harvesting each day value by value: full pages, none twice.
        minimum = sum(
            math.ceil(len(sim.oracle(_one(BY_REGION, v), a, b)) / 100)
            for a, b in days
            for v in REGIONS
        )
        codes = await harvest_day_by_day(sim, study, max_days=3 * math.ceil(minimum / QUOTA))
        used = successful_queries(sim)
        charged = counted_requests(sim)
        report = status_report(study, now=sim.clock.now())
        with SqliteState(study.state_path) as state:
            leaves = [s.key for s in state.shards(status="done")]
    assert codes[-1] == EXIT_OK, codes
    ids = assert_equals_oracle(study, truth)
    assert len(ids) == len(truth)
    # Every day was cut by region: the leaves name their value.
    assert all("_q" in key for key in leaves), leaves
    assert {key.rsplit("_", 1)[1] for key in leaves} == set(REGIONS)
    print(
        f"{len(truth)} records in {len(codes)} runs, {charged / QUOTA:.1f} quota-days: "
        f"{used} successful requests for a minimum "
        f"of {minimum} by value ({sum(per_day)} by whole day)"
    )
    assert used <= 1.05 * minimum
    assert report["complete"]
    # Files per plan shard stay one per partition.
    files = sorted(p.name for p in study.output_path.rglob("*.parquet"))
    assert len(files) == len(days) and len(set(files)) == 1


@pytest.mark.slow
async def test_values_that_overlap_are_harvested_once(tmp_path: Path) -> None:
    """A video with two of the listed hashtags is returned to both sub-queries; it is kept by
    the first value's only."""
    settings = {**SIM, "videos_per_day": 1_500, "daily_requests": QUOTA, "search_ttl": 3_600.0}
    async with running_simulator("clean", **settings) as sim:
        study = _study(tmp_path, sim, BY_HASHTAG, days=3, expected=None)
        start, end = study_period(study)
        truth = sim.oracle(BY_HASHTAG, start, end)
        each = sum(len(sim.oracle(_one(BY_HASHTAG, v), start, end)) for v in HASHTAGS)
        assert each > len(truth)  # the sub-queries overlap: a union by id is needed
        assert math.ceil(len(truth) / 2 / 100) > QUOTA // 2  # a day is above a window's share
        codes = await harvest_day_by_day(sim, study, max_days=30)
        with SqliteState(study.state_path) as state:
            leaves = [s.key for s in state.shards(status="done")]
    assert codes[-1] == EXIT_OK, codes
    assert_equals_oracle(study, truth)
    # The first day, fetched whole, told how busy a day is; the days after were cut by value.
    cut = [key for key in leaves if "_q" in key]
    assert {key.rsplit("_", 1)[1] for key in cut} == set(HASHTAGS), leaves
    assert len(leaves) - len(cut) == 1 and len(cut) == 2 * len(HASHTAGS), leaves


def _one(groups: list[dict[str, Any]], value: str) -> list[dict[str, Any]]:
    cond = {**groups[0]["conditions"][0], "field_values": [value]}
    return [{"operator": "and", "conditions": [cond]}]


def test_plan_accepts_a_big_day_it_can_cut_by_region(tmp_path: Path) -> None:
    text = study_text(
        "http://127.0.0.1:9", source="research-api", days=30, window=30, groups=BY_REGION,
        daily_requests=100,
    ).replace("[study]\n", "[study]\nexpected_records_per_day = 30000\n")  # fmt: skip
    (tmp_path / "study.toml").write_text(text)
    out = cli("plan", str(tmp_path / "study.toml"), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["minimum_quota_days"] > 30


@pytest.mark.parametrize(
    ("groups", "says"),
    [
        (
            [{"operator": "and", "conditions": [
                {"field": "video_description", "operator": "like", "field_values": ["%vote%"]}
            ]}],
            "has no IN list",
        ),
        (BY_REGION, "even cut by its 5 values of region_code"),
    ],
)  # fmt: skip
def test_plan_refuses_a_big_day_it_cannot_cut(
    tmp_path: Path, groups: list[dict[str, Any]], says: str
) -> None:
    text = study_text(
        "http://127.0.0.1:9", source="research-api", days=30, window=30, groups=groups,
        daily_requests=100,
    ).replace("[study]\n", "[study]\nexpected_records_per_day = 80000\n")  # fmt: skip
    (tmp_path / "study.toml").write_text(text)
    out = cli("plan", str(tmp_path / "study.toml"))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot be harvested completely" in lines[0], out.stderr
    assert says in lines[0] and "daily_requests" in lines[0] and "Traceback" not in out.stderr
