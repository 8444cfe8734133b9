"""The public API matches approximately: whole harvests against the simulator in its approximate
mode (the flaky profile's default) still equal the exact oracle, in both query forms, and every
report says how many returned records the exact re-check dropped."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from harvester import ConfigError
from harvester.config import Study, loads_study
from harvester.orchestrator import EXIT_OK, plan_report, status_report, verify_study
from harvester.orchestrator._entry import _summary
from harvester.simulator.testing import running_simulator
from harvester.sink import MANIFEST
from harvester.state import SqliteState
from tests.orchestrator.conftest import SIM, assert_equals_oracle, counted_requests, epoch, run

pytestmark = pytest.mark.anyio

START = date(2022, 1, 3)
FIELDS = ["id", "create_time", "region_code", "view_count"]
#: Both forms ask the same thing: four regions, a hashtag of several (near ones exist: the
#: corpus has #elections2024 beside #election), and no video whose description says "lol".
SEED: list[dict[str, Any]] = [
    {
        "operator": "and",
        "conditions": [
            {"field": "region_code", "operator": "in", "field_values": ["NL", "DE", "GB", "US"]}
        ],
    },
    {
        "operator": "or",
        "conditions": [
            {"field": "hashtag_names", "operator": "contains", "field_values": ["election"]},
            {"field": "hashtag_names", "operator": "contains", "field_values": ["vote", "news"]},
        ],
    },
    {
        "operator": "not",
        "conditions": [{"field": "video_description", "operator": "eq", "field_values": ["lol"]}],
    },
]
REST: dict[str, Any] = {
    "and": [
        {"operation": "IN", "field_name": "region_code", "field_values": ["NL", "DE", "GB", "US"]}
    ],
    "or": [
        {"operation": "EQ", "field_name": "hashtag_name", "field_values": ["election"]},
        {"operation": "IN", "field_name": "hashtag_name", "field_values": ["vote", "news"]},
    ],
    "not": [{"operation": "EQ", "field_name": "username", "field_values": ["thetheday7"]}],
}


def _study(tmp_path: Path, base_url: str, form: str, **study: Any) -> Study:
    query: dict[str, Any] = {"condition_groups": SEED} if form == "seed" else {"query": REST}
    doc = {
        "study": {
            "name": f"approx-{form}",
            "source": "research-api",
            "start_date": START.isoformat(),
            "end_date": (START + timedelta(days=5)).isoformat(),
            "window": "3d",
            "fields": FIELDS,
            **query,
            **study,
        },
        "api": {"base_url": base_url, "max_concurrency": 3, "requests_per_second": 2000},
        "output": {"path": "data"},
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "study.toml"
    text = tomli_w.dumps(doc)
    path.write_text(text)
    return loads_study(text, path)


@pytest.mark.parametrize("form", ["seed", "rest"])
async def test_a_flaky_approximate_api_still_gives_the_exact_dataset(
    tmp_path: Path, form: str
) -> None:
    async with running_simulator("flaky", **SIM) as sim:
        assert sim.config.approximate_matching  # the flaky profile's default
        study = _study(tmp_path, sim.base_url, form)
        assert await run(sim, study) == EXIT_OK
        query: Any = SEED if form == "seed" else REST
        expected = sim.oracle(query, epoch(START), epoch(START + timedelta(days=6)))
        near = sim.stats.faults["approximate_match"]
    assert near > 0, "the simulator returned no near string: the test proves nothing"
    assert_equals_oracle(study, expected)
    assert verify_study(study)["ok"]

    status = status_report(study)
    dropped = status["dropped_by_exact_filter"]
    assert dropped >= near > 0  # near strings, and the flaky profile's random extras
    assert (
        f"{dropped:,} of {dropped + status['records']:,} returned records dropped"
        in (status["text"])
    )
    with SqliteState(study.state_path) as state:
        per_shard = {s.key: s.filtered for s in state.shards() if s.filtered}
    assert sum(per_shard.values()) == dropped and len(per_shard) >= 1
    manifest = json.loads((study.output_path / MANIFEST).read_text())
    assert manifest["dropped_by_exact_filter"] == dropped
    assert f"the exact filter dropped {dropped:,} returned records" in _summary(study, 0, 1.0)
    print(f"{form}: {len(expected)} records kept, {dropped} returned records dropped")


async def test_a_full_scan_is_refused_unless_allowed_then_filtered_exactly(tmp_path: Path) -> None:
    only_not = {"not": [{"operation": "EQ", "field_name": "hashtag_name", "field_values": ["fyp"]}]}
    async with running_simulator("clean", **SIM, approximate_matching=True) as sim:
        refused = _study(tmp_path / "refused", sim.base_url, "rest", query=only_not)
        with pytest.raises(ConfigError, match="nothing positive is left to send") as info:
            plan_report(refused)
        assert "allow_full_scan = true" in str(info.value) and "requests" in str(info.value)
        with pytest.raises(ConfigError, match="nothing positive"):
            await run(sim, refused)
        assert counted_requests(sim) == 0
        assert not refused.output_path.exists()

        study = _study(tmp_path / "allowed", sim.base_url, "rest", query=only_not, window="1d",
                       end_date=START.isoformat(), allow_full_scan=True)  # fmt: skip
        report = plan_report(study)
        assert report["full_scan"] and "nothing positive" in report["text"]
        assert await run(sim, study) == EXIT_OK
        expected = sim.oracle(only_not, epoch(START), epoch(START + timedelta(days=1)))
        lost = sim.stats.faults["approximate_exclusion"]
    assert lost == 0  # the `not` was never sent: nothing true was excluded server-side
    assert_equals_oracle(study, expected)
    assert status_report(study)["dropped_by_exact_filter"] > 0  # the #fyp videos
