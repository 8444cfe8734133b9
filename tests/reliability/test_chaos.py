"""Crash chaos in CI: twenty SIGKILLs at the moments that matter, nothing lost (scripts/chaos.py).

`make chaos` runs the same with 200 kills (and 100 on RQS studies). The seed is printed;
HARVESTER_CHAOS_SEED replays one.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest

KILLS = 20
RQS_KILLS = 10


@pytest.mark.slow
def test_twenty_sigkills_lose_nothing_and_waste_at_most_the_pages_in_flight(
    tmp_path: Path, chaos: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = int(os.environ.get("HARVESTER_CHAOS_SEED", "7"))
    with capsys.disabled():
        report = chaos.run_chaos(KILLS, seed, tmp_path, say=lambda s: print(f"\n{s}", end=""))
    # run_chaos raises at the first broken guarantee: an unreadable or duplicated dataset after
    # a kill, a run that fails, a verify that fails, a dataset unequal to the oracle, a leaf that
    # resumed before its checkpoint, or more pages lost than leaves in flight. The figures:
    assert len(report.kills) >= KILLS
    assert report.records > 0
    assert report.records_lost == 0
    assert report.extra_records == 0
    assert report.pages_lost_to_crashes <= report.leaves_in_flight_at_kills
    assert report.pages_lost_to_crashes <= len(report.kills) * chaos.CONCURRENCY
    # The deck deals every moment; those whose event a run reached before it ended were killed.
    assert {"start-up", "page", "checkpoint", "finalize"} <= set(report.moments)
    assert report.leaves_resumed > 0, "no kill left a window half fetched"


@pytest.mark.slow
def test_sigkills_on_rqs_studies_lose_nothing(
    tmp_path: Path, chaos: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same guarantees for RQS studies, whose result pages take the Arrow decoding path:
    tasks created, announced, waited for, paged, finalized and compacted under SIGKILLs."""
    seed = int(os.environ.get("HARVESTER_CHAOS_SEED", "7"))
    with capsys.disabled():
        report = chaos.run_chaos(
            RQS_KILLS, seed, tmp_path, say=lambda s: print(f"\n{s}", end=""), source="rqs"
        )
    assert len(report.kills) >= RQS_KILLS
    assert report.records > 0
    assert report.records_lost == 0
    assert report.extra_records == 0
    assert report.pages_lost_to_crashes <= report.leaves_in_flight_at_kills
    assert {"page", "checkpoint", "finalize", "landed"} <= set(report.moments)
