"""Fault storms: each fault class alone and all together at high rates, and a window that always
fails. The harvest must equal the oracle, and `status` must count every kind of failure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from harvester import HarvesterError
from harvester.orchestrator import harvest, status_report, verify_study
from harvester.orchestrator._run import MAX_LEAF_ATTEMPTS
from harvester.plan import DAY
from harvester.simulator import running_simulator
from tests.reliability._study import (
    CREDS,
    FAST_TASKS,
    SIM,
    START,
    dataset_ids,
    epoch,
    groups,
    options,
    oracle,
    study_text,
    write_study,
)
from tests.reliability.conftest import HARVESTER, SIM_ENV

#: (storm, simulator fault rates, simulator settings, study settings,
#:  {status error kind: simulator fault classes whose every firing it must count})
STORMS: list[
    tuple[str, dict[str, float], dict[str, Any], dict[str, Any], dict[str, tuple[str, ...]]]
] = [
    ("5xx", {"http_500": 0.5}, {}, {}, {"5xx": ("http_500",)}),
    ("html-504", {"gateway_timeout": 0.5}, {}, {}, {"5xx": ("gateway_timeout",)}),
    ("empty-502-503", {"empty_body": 0.5}, {}, {}, {"5xx": ("empty_body",)}),
    ("truncated-json", {"truncated_body": 0.4}, {}, {}, {"bad_body": ("truncated_body",)}),
    ("429-bursts", {"rate_limited": 0.5}, {}, {}, {"rate_limited": ("rate_limited",)}),
    (
        "search-id-expired",
        {"search_id_rejected": 0.7, "invalid_cursor": 0.7},
        {},
        {},
        {"search_id_invalid": ("search_id_rejected", "invalid_cursor")},
    ),
    ("connection-reset", {"connection_reset": 0.4}, {}, {}, {"connection": ("connection_reset",)}),
    (
        "slower-than-timeout",
        {"slow_response": 0.3, "slow_delay": 0.6},
        {},
        {"timeout_s": 0.3},
        {"timeout": ("slow_response",)},
    ),
    (
        "token-expires",
        {"token_expiry": 0.3},
        {"token_ttl": 1.0},
        {},
        {"token_rejected": ("token_expiry",)},
    ),
    (
        "paging-quirks",
        {
            "short_page": 0.6,
            "cursor_missing": 0.6,
            "duplicate": 0.6,
            "silent_empty": 0.6,
            "huge_page": 0.3,
        },
        {"videos_per_day": 600},
        {},
        {},
    ),
    (
        "all-together",
        {
            "http_500": 0.5,
            "http_500_max_run": 2,
            "gateway_timeout": 0.1,
            "empty_body": 0.1,
            "truncated_body": 0.1,
            "connection_reset": 0.1,
            "slow_response": 0.05,
            "slow_delay": 0.6,
            "token_expiry": 0.1,
            "rate_limited": 0.2,
            "search_id_rejected": 0.3,
            "invalid_cursor": 0.3,
            "short_page": 0.3,
            "cursor_missing": 0.3,
            "duplicate": 0.3,
            "silent_empty": 0.3,
            "window_failure": 0.5,
            # Every window over a bad day fails at the rate above, whatever it matches.
            "window_failure_matches": 1,
        },
        {"token_ttl": 2.0, "videos_per_day": 600},
        {"timeout_s": 0.3},
        {
            "5xx": ("http_500", "gateway_timeout", "empty_body"),
            "bad_body": ("truncated_body",),
            "rate_limited": ("rate_limited",),
            "search_id_invalid": ("search_id_rejected", "invalid_cursor"),
            "connection": ("connection_reset",),
            "timeout": ("slow_response",),
            "token_rejected": ("token_expiry",),
        },
    ),
]

#: Faults the harvests of this module injected, by class (for docs/reliability.md).
INJECTED: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_injected() -> Iterator[None]:
    yield
    if INJECTED:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(INJECTED.items()))
        print(f"\nfault storms injected {sum(INJECTED.values())} faults: {kinds}")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("faults", "sim_settings", "study_settings", "counted"),
    [s[1:] for s in STORMS],
    ids=[s[0] for s in STORMS],
)
async def test_storm_completes_equal_to_oracle_and_status_counts_it(
    tmp_path: Path,
    faults: dict[str, float],
    sim_settings: dict[str, Any],
    study_settings: dict[str, Any],
    counted: dict[str, tuple[str, ...]],
) -> None:
    async with running_simulator("clean", **{**SIM, **sim_settings}, faults=faults) as sim:
        _, study = write_study(tmp_path, study_text(sim.base_url, **study_settings))
        with anyio.fail_after(120):
            code = await harvest(study, CREDS, options(attempts=30), clock=sim.clock.now)
        assert code == 0
        got = dataset_ids(study.output_path)
        assert len(got) == len(set(got)), "duplicate rows"
        assert set(got) == oracle(sim, study)
        fired = sim.stats.faults
    INJECTED.update(fired)
    for name, rate in faults.items():
        if not name.endswith(("_run", "_delay", "_matches")) and rate > 0:
            assert fired[name] > 0, f"{name} never fired: the storm tested nothing"
    report = status_report(study)
    assert report["complete"] and not report["parked"]
    for kind, classes in counted.items():
        injected = sum(fired[c] for c in classes)
        # Every injected fault is one failed attempt of that kind; a few more come from the
        # client's side of the same fault (a reset seen as a timeout, a cut body as a 5xx).
        assert report["errors"].get(kind, 0) >= injected, (kind, report["errors"], dict(fired))
    assert verify_study(study)["ok"]


@pytest.mark.anyio
async def test_analysis_failed_tasks_are_created_again(tmp_path: Path) -> None:
    faults = {"analysis_failed": 0.6, "http_500": 0.3}
    async with running_simulator("clean", **SIM, **FAST_TASKS, faults=faults) as sim:
        text = study_text(sim.base_url, source="rqs", days=6, window=1, name="storm-rqs")
        _, study = write_study(tmp_path, text)
        with anyio.fail_after(120):
            assert await harvest(study, CREDS, options(attempts=30), clock=sim.clock.now) == 0
        assert set(dataset_ids(study.output_path)) == oracle(sim, study)
        fired = sim.stats.faults
    INJECTED.update(fired)
    assert fired["analysis_failed"] > 0
    errors = status_report(study)["errors"]
    assert errors.get("analysis_failed", 0) >= fired["analysis_failed"], errors
    assert errors.get("5xx", 0) >= fired["http_500"], errors


@pytest.mark.anyio
async def test_a_window_that_always_fails_is_parked_then_retried(tmp_path: Path) -> None:
    day = START + timedelta(days=3)  # in the plan shard [START + 2, START + 4)
    poison = {"poison_start": epoch(day), "poison_end": epoch(day) + DAY}
    attempts = 4
    async with running_simulator("clean", **SIM, faults=poison) as sim:
        text = study_text(sim.base_url, days=8, window=2, max_attempts=attempts)
        config, study = write_study(tmp_path, text)
        with anyio.fail_after(120), pytest.raises(HarvesterError) as info:
            await harvest(study, CREDS, options(attempts=attempts), clock=sim.clock.now)
        assert "parked" in str(info.value) and "--retry-failed" in str(info.value)

        # The two-day window holding the day was split; its failing half is parked and reported,
        # every other plan shard is complete and in the dataset.
        report = status_report(study)
        key = f"{day:%Y%m%d}-{day + timedelta(days=1):%Y%m%d}"
        assert [(p["shard"], p["kind"]) for p in report["parked"]] == [(key, "5xx")]
        assert f"parked: {key} (5xx)" in report["text"]
        assert report["committed_plan_shards"] == report["plan_shards"] - 1
        assert report["errors"]["5xx"] >= sim.stats.faults["poison_window"] > 0
        # Bounded: leaf attempts x request attempts, as the two-day parent and then alone.
        assert sim.stats.faults["poison_window"] <= 2 * MAX_LEAF_ATTEMPTS * attempts
        truth = oracle(sim, study)
        pending = sim.oracle(groups(), epoch(day - timedelta(days=1)), epoch(day) + DAY)
        got = dataset_ids(study.output_path)
        assert pending and len(got) == len(set(got)) and set(got) == truth - pending
        INJECTED.update(sim.stats.faults)

        # The API recovers; `harvester run --retry-failed` (the real CLI) takes the window up.
        sim.set_faults(poison_start=0, poison_end=0)
        done = await anyio.run_process(
            [*HARVESTER, "run", str(config), "--retry-failed", "--no-progress"],
            env=SIM_ENV,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
        got = dataset_ids(study.output_path)
        assert len(got) == len(set(got)) and set(got) == truth
    assert verify_study(study)["ok"]
    assert status_report(study)["parked"] == []
