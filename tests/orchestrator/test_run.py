"""Whole harvests in-process: the dataset equals the simulator's oracle, whatever the source."""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import harvester
from harvester import rqs
from harvester.api import ApiSession, RqsClient
from harvester.orchestrator import EXIT_OK, status_report, verify_study
from harvester.orchestrator._backends import make_backend
from harvester.simulator.testing import running_simulator
from harvester.sink import PROVENANCE
from harvester.state import SqliteState
from tests.orchestrator.conftest import (
    CREDS,
    FAST_TASKS,
    FIELDS,
    POLL,
    SIM,
    SIM_ENV,
    assert_equals_oracle,
    counted_requests,
    make_study,
    oracle,
    read_duckdb,
    read_polars,
    read_pyarrow,
    run,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("source", ["research-api", "rqs", "pyrqs"])
async def test_dataset_equals_the_oracle(tmp_path: Path, source: str) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        study = make_study(tmp_path, sim.base_url, source=source, days=4, window=2)
        extra: dict[str, Any] = {}
        sdk = None
        if source == "pyrqs":
            # harvester's own SDK drop-in stands in for TikTok's pyrqs: same blocking surface.
            sdk = rqs.RQSClient(environ={**SIM_ENV, "TIKTOK_API_BASE_URL": sim.base_url})
            extra["sdk_client"] = sdk
        t0 = time.perf_counter()
        try:
            code = await run(sim, study, **extra)
        finally:
            if sdk is not None:
                await anyio.to_thread.run_sync(sdk.close)
        elapsed = time.perf_counter() - t0
        expected = oracle(sim, study)
        requests = counted_requests(sim)
    assert code == EXIT_OK
    assert len(expected) > 100  # a corpus worth the name
    ids = assert_equals_oracle(study, expected)
    assert verify_study(study)["ok"]
    status = status_report(study)
    assert status["complete"] and status["records"] == len(ids) == status["dataset_rows"]
    print(f"{source}: {len(ids)} records, {requests} counted requests, {elapsed:.2f}s")


async def test_research_api_post_filter_drops_the_fuzzy_extras(tmp_path: Path) -> None:
    # The API matches hashtags fuzzily: it returns videos the seed query does not want.
    async with running_simulator("clean", **SIM, faults={"fuzzy_false_positive": 0.3}) as sim:
        study = make_study(tmp_path, sim.base_url, source="research-api", days=3, window=3)
        assert study.translation is not None and study.translation.post_filter is not None
        assert await run(sim, study) == EXIT_OK
        assert sim.stats.records_delivered > len(oracle(sim, study))
        assert_equals_oracle(study, oracle(sim, study))


async def test_saturated_tasks_split_until_the_dataset_is_complete(tmp_path: Path) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        # ~60 matches a day: a limit of 40 saturates every one-day task at least once.
        study = make_study(tmp_path, sim.base_url, source="rqs", days=3, window=3, limit=40)
        assert await run(sim, study) == EXIT_OK
        expected = oracle(sim, study)
        tasks = sim.stats.tasks_created
    assert_equals_oracle(study, expected)
    with SqliteState(study.state_path) as state:
        shards = state.shards()
    plan = [s for s in shards if s.parent_key is None]
    children = [s for s in shards if s.parent_key is not None]
    assert len(plan) == 1 and plan[0].status == "split"
    assert len(children) >= 6  # 3 days at 40 each cannot hold ~180 records
    leaves = [s for s in children if s.status == "done"]
    assert all(s.records <= 40 for s in leaves)
    # Leaves tile the plan window: no gap, no overlap.
    spans = sorted((s.start, s.end) for s in leaves)
    assert spans[0][0] == plan[0].start and spans[-1][1] == plan[0].end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert tasks >= len(leaves)


async def test_every_reader_sees_the_same_schema_and_rows(tmp_path: Path) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        study = make_study(
            tmp_path,
            sim.base_url,
            source="rqs",
            days=3,
            partition_by=("create_date", "region_code"),
        )
        assert await run(sim, study) == EXIT_OK
        expected = oracle(sim, study)
    root = study.output_path
    readers = [
        read_pyarrow(root),
        read_duckdb(root, ("create_date", "region_code")),
        read_polars(root),
    ]
    for r in readers:
        assert sorted(r.ids) == sorted(expected)
        # Hive partition columns come back from the path; the rest from the files.
        assert set(r.columns) == set(FIELDS) | set(PROVENANCE) | {"create_date"}
    assert readers[0].columns == readers[1].columns
    assert set(readers[0].columns) == set(readers[2].columns)
    # The files themselves do not repeat the partition columns.
    some_file = next(root.rglob("*.parquet"))
    assert "create_date" not in pq.read_schema(some_file).names
    assert "region_code=" in str(some_file.relative_to(root))

    manifest = json.loads((root / "_harvest.json").read_text())
    assert manifest["study"] == study.name and manifest["source"] == "rqs"
    assert manifest["fingerprint"] == study.fingerprint()
    assert manifest["fields"] == list(study.fields)
    assert manifest["partition_by"] == ["create_date", "region_code"]
    assert manifest["rows"] == len(expected)
    assert manifest["committed_plan_shards"] == manifest["plan_shards"] == 3
    # The versions that wrote these bytes, for whoever compares two datasets later.
    assert manifest["written_by"]["harvester"] == harvester.__version__
    assert manifest["written_by"]["pyarrow"] == pa.__version__
    assert set(manifest["written_by"]) >= {"python", "orjson", "aiohttp"}
    table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
    assert set(table.column("_source").to_pylist()) == {"rqs"}
    with SqliteState(study.state_path) as state:
        leaves = {s.key for s in state.shards(status="done")}
    assert set(table.column("_shard").to_pylist()) == leaves
    assert table.column("_retrieved_at").null_count == 0


async def test_status_polls_get_half_the_study_s_request_rate(tmp_path: Path) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        study = make_study(tmp_path, sim.base_url, days=2)
        assert study.api.requests_per_second == 2000
        for given, rate in ((POLL, 1000.0), (replace(POLL, rate=3.0), 3.0)):
            async with ApiSession(study.api.base_url, CREDS) as s:
                backend = make_backend(study, s, poll=given)
            assert isinstance(backend, RqsClient)
            assert backend.poll.rate == rate
            assert backend.poll.initial == POLL.initial  # the rest as given
        assert await run(sim, study) == EXIT_OK
