"""The VCE's two stages end to end (facts 10-13): test-stage samples spread over every window,
never split, continued the next quota day; pyrqs without credentials of ours, through an
SDK-like client talking to the simulator; result names and id-less rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import orjson
import pyarrow.dataset as ds
import pytest

from harvester import rqs
from harvester.config import Study, load_study, resolve_credentials
from harvester.orchestrator import (
    EXIT_QUOTA,
    Harvest,
    cancel_study,
    harvest,
    status_report,
    verify_study,
)
from harvester.simulator import Simulator, vce
from harvester.simulator.testing import running_simulator
from harvester.sink import MANIFEST
from harvester.state import SqliteState
from tests.orchestrator.conftest import (
    DAY,
    FAST_TASKS,
    HOUR_LONG_TASKS,
    SEED_GROUPS,
    SIM,
    SIM_ENV,
    assert_equals_oracle,
    epoch,
    make_study,
    options,
    oracle,
    run,
)
from tests.orchestrator.test_leaf import run_until_pages

pytestmark = pytest.mark.anyio
TEST_STAGE: dict[str, Any] = {**SIM, **FAST_TASKS, "stage": "test"}


def population(sim: Simulator, study: Study) -> set[int]:
    """What the test stage may return for the study: the oracle's popular creators' videos."""
    return vce.eligible_ids(sim, SEED_GROUPS, epoch(study.start_date), epoch(study.end_date) + DAY)


def per_day(ids: set[int]) -> Counter[int]:
    return Counter((i >> 32) // DAY for i in ids)


def dataset_ids(study: Study) -> list[int]:
    table = ds.dataset(study.output_path, format="parquet", partitioning="hive").to_table()
    ids: list[int] = table.column("id").to_pylist()
    return ids


def manifest(study: Study) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((study.output_path / MANIFEST).read_text())
    return data


def assert_sampled(sim: Simulator, study: Study, limit: int) -> list[int]:
    """Every window holds min(limit, its population) random videos, each of the population."""
    ids = dataset_ids(study)
    assert len(ids) == len(set(ids))
    pool = population(sim, study)
    assert set(ids) <= pool
    got, available = per_day(set(ids)), per_day(pool)
    assert {d: min(limit, n) for d, n in available.items()} == dict(got)
    assert any(n > limit for n in available.values()), "no window was saturated"
    return ids


def no_splits(study: Study) -> bool:
    with SqliteState(study.state_path) as state:
        return all(s.parent_key is None for s in state.shards())


async def test_test_stage_samples_every_window_and_never_splits(tmp_path: Path) -> None:
    async with running_simulator("clean", **TEST_STAGE) as sim:
        # 10 one-day windows and 200 records a day: 20 a window, fewer than most days hold.
        study = make_study(
            tmp_path, sim.base_url, source="rqs", stage="test", days=10, daily_records=200
        )
        assert await run(sim, study) == 0
        ids = assert_sampled(sim, study, limit=20)
        assert sim.stats.tasks_created == 10 and no_splits(study)
    assert 100 < len(ids) <= 200
    info = manifest(study)
    assert info["completeness"] == "sample"
    assert info["sample"] == {
        "stage": "test",
        "limit_per_window": 20,
        "day_budget": 200,
        "windows": 10,
        "windows_sampled": 10,
        "population": "public videos of creators with at least 25,000 followers",
    }
    status = status_report(study)
    assert status["completeness"] == "sample" and status["sample"]["limit_per_window"] == 20
    assert "sample (test stage): at most 20 random videos per window" in status["text"]
    verified = verify_study(study)
    assert verified["ok"] and "completeness: sample (test stage)" in verified["text"]


async def test_an_execution_dataset_says_complete(tmp_path: Path) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        study = make_study(tmp_path, sim.base_url, source="rqs", days=2)
        assert await run(sim, study) == 0
        assert_equals_oracle(study, oracle(sim, study))
    assert manifest(study)["completeness"] == "complete" and "sample" not in manifest(study)
    assert "complete (every matching video)" in status_report(study)["text"]


async def test_a_spent_day_stops_the_sample_and_the_next_day_continues_it(
    tmp_path: Path,
) -> None:
    async with running_simulator("clean", **TEST_STAGE) as sim:
        # More windows than a day has records: one video a window, 5 a day, over days.
        study = make_study(
            tmp_path,
            sim.base_url,
            source="rqs",
            stage="test",
            days=10,
            daily_records=5,
            on_exhausted="exit",
            max_concurrency=1,
        )
        assert await run(sim, study) == EXIT_QUOTA
        first_day = len(dataset_ids(study)) if any(study.output_path.rglob("*.parquet")) else 0
        status = status_report(study)
        assert 0 < status["records_today"] <= 6 and status["records_left_today"] <= 0
        assert status["sample"]["windows_sampled"] < 10
        codes = []
        for _ in range(3):  # a quota day at a time
            sim.clock.advance(DAY - sim.clock.seconds_into_day() + 1)
            codes.append(await run(sim, study))
            if codes[-1] == 0:
                break
        assert codes[-1] == 0 and set(codes[:-1]) <= {EXIT_QUOTA}
        assert_sampled(sim, study, limit=1)
        assert first_day < 10 and no_splits(study)
    assert manifest(study)["sample"]["windows_sampled"] == 10


# --------------------------------------------------------------------------- pyrqs


def drop_in(sim: Simulator) -> rqs.RQSClient:
    """An SDK-like client: the drop-in, holding the credentials the VCE would hold."""
    return rqs.RQSClient(environ={**SIM_ENV, "TIKTOK_API_BASE_URL": sim.base_url})


async def test_pyrqs_test_stage_needs_no_credentials_of_ours(tmp_path: Path) -> None:
    async with running_simulator("clean", **TEST_STAGE) as sim:
        study = make_study(
            tmp_path, sim.base_url, source="pyrqs", stage="test", days=6, daily_records=120
        )
        credentials = resolve_credentials(study, {})  # an empty environment: nothing asked
        with drop_in(sim) as sdk:
            code = await harvest(study, credentials, options(sdk_client=sdk), clock=sim.clock.now)
        assert code == 0
        assert_sampled(sim, study, limit=20)
        assert no_splits(study)
    assert manifest(study)["sample"]["limit_per_window"] == 20


class VceNames:
    """An SDK whose results use the newer VCE page's names and hold a row without an id."""

    def __init__(self, sdk: rqs.RQSClient) -> None:
        self.sdk = sdk
        self.orphans = 0

    def create_query_task(self, **kw: Any) -> int:
        return self.sdk.create_query_task(**kw)

    def check_query_task_status(self, task_id: int) -> str:
        return self.sdk.check_query_task_status(task_id)

    def cancel_query_task(self, task_id: int) -> bool:
        return self.sdk.cancel_query_task(task_id)

    def get_query_task_result(self, task_id: int) -> str:
        renamed = []
        for r in orjson.loads(self.sdk.get_query_task_result(task_id)):
            r["video_id"] = r.pop("id")
            r["create_date"] = r.pop("create_time")
            r["country_code"] = r.pop("region_code")
            renamed.append(r)
        if renamed:
            self.orphans += 1
            renamed.append({"create_date": renamed[0]["create_date"], "username": "lost"})
        return orjson.dumps(renamed).decode()


async def harvest_renamed(sim: Simulator, study: Study) -> tuple[int, VceNames]:
    """Harvest `study` through the drop-in with results under the VCE's other names, and a row
    without an id added to each page (`VceNames`)."""
    with drop_in(sim) as sdk:
        renaming = VceNames(sdk)
        code = await harvest(
            study, resolve_credentials(study, {}), options(sdk_client=renaming),
            clock=sim.clock.now,
        )  # fmt: skip
    return code, renaming


async def test_pyrqs_results_under_other_names_and_rows_without_an_id(tmp_path: Path) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        study = make_study(tmp_path, sim.base_url, source="pyrqs", days=3)
        code, renaming = await harvest_renamed(sim, study)
        assert code == 0
        # Stored under the catalogue's names: the dataset equals the oracle, nothing in _extra.
        assert_equals_oracle(study, oracle(sim, study))
    table = ds.dataset(study.output_path, format="parquet", partitioning="hive").to_table()
    assert "region_code" in table.column_names and "country_code" not in table.column_names
    assert table.column("_extra").null_count == table.num_rows
    # The rows without an id: counted, warned about, kept beside the dataset.
    kept = study.output_path.with_name(study.output_path.name + ".quarantine")
    lines = [json.loads(x) for p in kept.glob("*.jsonl") for x in p.read_text().splitlines()]
    assert len(lines) == renaming.orphans == 3
    assert {x["reason"] for x in lines} == {"no id"} and lines[0]["record"]["username"] == "lost"
    info = manifest(study)
    assert info["quarantined_records"] == 3 and info["quarantine"] == f"../{kept.name}"
    assert "3 record(s) without a usable id" in status_report(study)["text"]
    assert not list(study.output_path.rglob("*.jsonl"))  # readers never see them


async def test_cancel_reaches_pyrqs_tasks_through_the_sdk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hour-long tasks: a run cut short leaves them in flight.
    async with running_simulator("clean", **SIM, **HOUR_LONG_TASKS) as sim:
        # Nothing listens at the study's base_url: pyrqs never goes there, the SDK does the work.
        study = make_study(tmp_path, "http://127.0.0.1:9", source="pyrqs", days=3)
        credentials = resolve_credentials(study, {})
        with drop_in(sim) as sdk:
            h = Harvest(study, credentials, options(sdk_client=sdk), clock=sim.clock.now)
            assert await run_until_pages(h, 3)
        with SqliteState(study.state_path) as state:
            in_flight = [int(s.task_id) for s in state.shards() if s.task_id]
        assert len(in_flight) == 3
        # `harvester cancel` opens TikTok's SDK (here: a module standing for it).
        clients: list[rqs.RQSClient] = []

        def sdk_client() -> rqs.RQSClient:
            clients.append(drop_in(sim))
            return clients[-1]

        standin = types.ModuleType("pyrqs")
        standin.rqs = types.SimpleNamespace(RQSClient=sdk_client)  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "pyrqs", standin)
        report = await anyio.to_thread.run_sync(cancel_study, study, credentials)
        for client in clients:
            client.close()
        assert len(report["cancelled"]) == 3
        assert {sim.tasks.status(sim.tasks.tasks[t]) for t in in_flight} == {"Cancelled"}


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def standin_pyrqs(tmp_path: Path) -> Iterator[Path]:
    """A `pyrqs` package on the path that stands for TikTok's SDK: the drop-in, configured
    from variables of its own (the VCE's), not harvester's."""
    root = tmp_path / "sdk"
    (root / "pyrqs").mkdir(parents=True)
    (root / "pyrqs" / "__init__.py").write_text("")
    (root / "pyrqs" / "rqs.py").write_text(
        "import os\n"
        "from harvester import rqs as _dropin\n\n"
        "def RQSClient():\n"
        "    env = {'TIKTOK_API_BASE_URL': os.environ['VCE_GATEWAY'],\n"
        "           'TIKTOK_CLIENT_KEY': os.environ['VCE_KEY'],\n"
        "           'TIKTOK_CLIENT_SECRET': os.environ['VCE_SECRET']}\n"
        "    return _dropin.RQSClient(environ=env)\n"
    )
    yield root


def run_without_our_credentials(
    config: Path, extra_env: dict[str, str], path: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIKTOK_")}
    repo = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (path, repo) if p)
    return subprocess.run(
        [sys.executable, "-m", "harvester.cli", "run", str(config), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, **extra_env},
        check=False,
    )


@pytest.mark.slow
async def test_cli_run_with_pyrqs_never_asks_for_our_credentials(
    tmp_path: Path, standin_pyrqs: Path
) -> None:
    async with running_simulator("clean", **TEST_STAGE) as sim:
        make_study(tmp_path, sim.base_url, source="pyrqs", stage="test", days=4)
        config = tmp_path / "study.toml"
        vce_env = {"VCE_GATEWAY": sim.base_url, "VCE_KEY": "sim-client-key",
                   "VCE_SECRET": "sim-client-secret"}  # fmt: skip
        done = await anyio.to_thread.run_sync(
            lambda: run_without_our_credentials(config, vce_env, str(standin_pyrqs))
        )
        assert done.returncode == 0, done.stderr
        assert "TIKTOK_CLIENT_KEY" not in done.stderr
        study = load_study(config)
        assert manifest(study)["completeness"] == "sample"
        assert set(dataset_ids(study)) <= population(sim, study)
    # Without the SDK (outside the VCE): one line that says where pyrqs lives, exit 2.
    missing = run_without_our_credentials(config, {})
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "Virtual Compute Environment" in missing.stderr
    assert "TIKTOK_CLIENT_KEY" not in missing.stderr
