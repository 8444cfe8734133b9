"""The sink side of a run: coarse partitions are compacted once every window writing into them
is committed, so readers find one file per partition rather than one per window."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from harvester.orchestrator._publish import partition_span
from harvester.simulator import running_simulator
from harvester.state import SqliteState

from .conftest import FAST_TASKS, SIM, assert_equals_oracle, make_study, oracle, run

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("partition", "span"),
    [
        ("create_date=2023-01-31", (1675123200, 1675209600)),
        ("create_month=2023-12/region_code=NL", (1701388800, 1704067200)),
        ("create_year=2024", (1704067200, 1735689600)),
        ("region_code=NL/create_date=2023-01-31", None),  # not led by a date: no span
        ("create_date=not-a-date", None),
    ],
)
def test_partition_span(partition: str, span: tuple[int, int] | None) -> None:
    assert partition_span(partition) == span


async def test_month_partitions_end_with_one_file_each(tmp_path: Path) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        study = make_study(
            tmp_path, sim.base_url, start=date(2022, 1, 20), days=20, window=3,
            partition_by=("create_month", "region_code"),
        )  # fmt: skip
        assert await run(sim, study) == 0
        assert_equals_oracle(study, oracle(sim, study))
    with SqliteState(study.state_path) as state:
        files = state.files()
    by_partition: dict[str, int] = {}
    for f in files:
        by_partition[f.partition] = by_partition.get(f.partition, 0) + 1
    months = {p.split("/")[0] for p in by_partition}
    assert months == {"create_month=2022-01", "create_month=2022-02"}
    assert by_partition and all(n == 1 for n in by_partition.values()), by_partition
    on_disk = sorted(p.relative_to(study.output_path).as_posix()
                     for p in study.output_path.rglob("*.parquet"))  # fmt: skip
    assert on_disk == sorted(f.path for f in files)
