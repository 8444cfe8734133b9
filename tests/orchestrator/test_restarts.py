"""A window is never restarted twice for the same reason without the plan changing: the record of
its restarts (reason, day) is kept in state, and the second restart for a reason splits it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harvester.orchestrator import EXIT_OK, EXIT_QUOTA
from harvester.simulator.testing import running_simulator
from harvester.state import SqliteState
from tests.orchestrator.conftest import DAY, SIM, assert_equals_oracle, epoch, make_study, run

pytestmark = pytest.mark.anyio

EVERYWHERE: list[dict[str, Any]] = [
    {
        "operator": "and",
        "conditions": [
            {"field": "region_code", "operator": "in", "field_values": ["US", "NL", "DE", "GB"]}
        ],
    }
]


@pytest.mark.slow
async def test_a_second_restart_for_the_same_reason_splits_the_window(tmp_path: Path) -> None:
    # A day's quota of 4 requests; the study's 4-day window needs about 10 pages, but the prior
    # (10 records a day) says one: it starts whole, cannot finish, and its search id expires
    # overnight, every night.
    settings = {**SIM, "videos_per_day": 400, "daily_requests": 4, "search_ttl": 600.0}
    async with running_simulator("clean", **settings) as sim:
        study = make_study(
            tmp_path, sim.base_url, source="research-api", days=4, window=4, groups=EVERYWHERE,
            daily_requests=4, on_exhausted="exit", max_concurrency=1,
            fields=("id", "create_time", "region_code"),
        )  # fmt: skip
        path = tmp_path / "study.toml"
        path.write_text(
            path.read_text().replace("[study]\n", "[study]\nexpected_records_per_day = 10\n")
        )
        from harvester.config import load_study

        study = load_study(path)
        start = epoch(study.start_date)
        truth = sim.oracle(EVERYWHERE, start, start + 4 * DAY)
        codes: list[int] = []
        while len(codes) < 40:
            codes.append(await run(sim, study))
            if codes[-1] != EXIT_QUOTA:
                break
            sim.clock.advance(DAY - sim.clock.now() % DAY + 5)
        with SqliteState(study.state_path) as state:
            restarts = state.restarts()
            shards = {s.key: s for s in state.shards()}
    assert codes[-1] == EXIT_OK, codes
    assert_equals_oracle(study, truth)
    assert restarts, "the scenario must restart windows overnight"
    by_leaf: dict[tuple[str, str], int] = {}
    for r in restarts:
        by_leaf[r.leaf_key, r.reason] = by_leaf.get((r.leaf_key, r.reason), 0) + r.count
    # A leaf restarted twice for one reason was split at the second: no third restart.
    assert max(by_leaf.values()) <= 2, by_leaf
    twice = [key for (key, _), n in by_leaf.items() if n == 2]
    assert twice and all(shards[key].status == "split" for key in twice), (twice, shards)
