"""Whole harvests into an S3 bucket (moto's server on loopback), read back from the bucket.

pyarrow reads the dataset from S3 itself. DuckDB reads S3 only through its httpfs extension,
which is downloaded at first use and cannot be installed offline: DuckDB scans the pyarrow
dataset (an Arrow scan, the same path `harvester verify` takes), so both readers see exactly
the objects in the bucket.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
import tomli_w

from harvester.config import Study, loads_study
from harvester.orchestrator import EXIT_OK, Harvest, status_report, verify_study
from harvester.report import gather, write_report
from harvester.simulator.testing import running_simulator
from harvester.state import SqliteState
from tests._s3 import SECRET_KEY, Bucket
from tests.orchestrator.conftest import (
    CREDS,
    FAST_TASKS,
    SEED_GROUPS,
    SIM,
    epoch,
    make_study,
    options,
    oracle,
    run,
)

pytestmark = pytest.mark.anyio


def s3fs(bucket: Bucket) -> pafs.S3FileSystem:
    host = bucket.endpoint.removeprefix("http://")
    return pafs.S3FileSystem(endpoint_override=host, scheme="http", region="us-east-1")


def read_s3(bucket: Bucket, prefix: str) -> list[int]:
    """The dataset's ids as pyarrow reads them from the bucket (hive partitions)."""
    dataset = ds.dataset(
        f"{bucket.name}/{prefix}", filesystem=s3fs(bucket), format="parquet", partitioning="hive"
    )
    return list(dataset.to_table(columns=["id"]).column("id").to_pylist())


def read_s3_duckdb(bucket: Bucket, prefix: str) -> list[int]:
    dataset = ds.dataset(
        f"{bucket.name}/{prefix}", filesystem=s3fs(bucket), format="parquet", partitioning="hive"
    )
    con = duckdb.connect()
    con.register("videos", dataset)
    return [r[0] for r in con.execute("SELECT id FROM videos").fetchall()]


def visible(bucket: Bucket, prefix: str) -> list[str]:
    """Keys under the dataset's prefix, directory markers (zero-byte `folder/` keys that
    pyarrow writes when it deletes a folder's last object) left out."""
    return [k for k in bucket.listing(prefix + "/") if not k.endswith("/")]


def assert_only_committed(bucket: Bucket, prefix: str, study: Study) -> None:
    """Nothing in the bucket but the files the state committed and `_harvest.json`."""
    with SqliteState(study.state_path) as state:
        known = {f"{prefix}/{f.path}" for f in state.files()}
    assert set(visible(bucket, prefix)) == known | {f"{prefix}/_harvest.json"}
    markers = [k for k in bucket.listing(prefix + "/") if k.endswith("/")]
    assert not [m for m in markers if "_staging" in m or ".tmp" in m], markers


async def test_a_harvest_into_s3_equals_the_oracle(tmp_path: Path, s3: Bucket) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        study = make_study(tmp_path, sim.base_url, days=4, window=2, output=s3.url("nl/e2e"))
        assert study.output_url == f"s3://{s3.name}/nl/e2e"
        assert await run(sim, study) == EXIT_OK
        expected = oracle(sim, study)
    assert len(expected) > 100
    ids = read_s3(s3, "nl/e2e")
    assert len(ids) == len(set(ids)) and set(ids) == expected
    assert sorted(read_s3_duckdb(s3, "nl/e2e")) == sorted(ids)
    assert_only_committed(s3, "nl/e2e", study)
    # Nothing of the dataset was written on the machine.
    assert not study.output_path.exists()
    manifest = json.loads(
        s3.client.get_object(Bucket=s3.name, Key="nl/e2e/_harvest.json")["Body"].read()
    )
    assert manifest["rows"] == len(ids) and manifest["committed_plan_shards"] == 2
    verified = verify_study(study)
    assert verified["ok"] and verified["rows"] == len(ids), verified["text"]
    status = status_report(study)
    assert status["complete"] and status["dataset_rows"] == len(ids)
    facts = gather(study)
    assert facts.manifest is not None and facts.manifest["rows"] == len(ids)
    assert sum(facts_day for facts_day in _videos(facts)) == len(ids)
    page = write_report(study, tmp_path / "report.html").read_text()
    assert f"s3://{s3.name}/nl/e2e" in page


async def test_verify_reads_the_bucket_and_the_sweep_removes_an_orphan(
    tmp_path: Path, s3: Bucket
) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        study = make_study(tmp_path, sim.base_url, days=2, window=1, output=s3.url("sweep"))
        assert await run(sim, study) == EXIT_OK
        # What a worker killed after its upload and before its commit leaves behind: an object
        # the state does not know, in a partition readers scan.
        orphan = "sweep/create_date=2022-01-01/20991231-20991231.parquet"
        first = visible(s3, "sweep/create_date=2022-01-01")[0]
        body = s3.client.get_object(Bucket=s3.name, Key=first)["Body"].read()
        s3.client.put_object(Bucket=s3.name, Key=orphan, Body=body)
        verified = verify_study(study)
        assert not verified["ok"]
        assert verified["strays"] == ["create_date=2022-01-01/20991231-20991231.parquet"]
        assert verified["rows"] == len(read_s3(s3, "sweep")) - len(read_s3(s3, orphan))
        # The next run is alone with the study: it sweeps what the state does not know.
        assert await run(sim, study) == EXIT_OK
    assert orphan not in s3.listing()
    assert verify_study(study)["ok"]


async def test_postgres_state_stages_in_the_bucket_and_sweeps_a_dead_workers_objects(
    tmp_path: Path, s3: Bucket, pg_url: str
) -> None:
    """With the state in PostgreSQL every worker stages under the dataset's `_staging/`
    prefix; a worker alone with the study removes what a dead one left the state never knew."""
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        study = make_study(
            tmp_path, sim.base_url, days=3, window=1, output=s3.url("pg"), state_url=pg_url
        )
        dead = ["pg/_staging/20220101-20220101/000000-deadbeef.arrow",
                "pg/create_date=2022-01-02/20220102-20220102.parquet"]  # fmt: skip
        for key in dead:
            s3.client.put_object(Bucket=s3.name, Key=key, Body=b"half of nothing")
        s3.client.put_object(Bucket=s3.name, Key="pg/_harvest.json", Body=b"{}")
        assert await run(sim, study) == EXIT_OK
        expected = oracle(sim, study)
    ids = read_s3(s3, "pg")
    assert len(ids) == len(set(ids)) and set(ids) == expected
    from harvester.state import open_store

    state = open_store(study.name, path=study.state_path, url=pg_url, existing=True)
    assert state is not None
    with state:
        known = {f"pg/{f.path}" for f in state.files()}
    assert set(visible(s3, "pg")) == known | {"pg/_harvest.json"}
    assert not [k for k in s3.listing("pg/_staging/")]
    assert verify_study(study)["ok"]


async def test_killed_between_upload_and_commit_resumes_exactly(
    tmp_path: Path, s3: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that dies after a plan shard's objects are uploaded, before the state records
    them, resumes with the same dataset: the objects are swept or replaced, never doubled."""
    from harvester.sink import finalize_plan_shard as real

    class Died(BaseException):
        """The process ends here (what a SIGKILL would do, without killing the test)."""

    target = "harvester.orchestrator._publish.finalize_plan_shard"
    calls = {"n": 0}

    def dying(*args: Any, **kw: Any) -> Any:
        files = real(*args, **kw)
        calls["n"] += 1
        if calls["n"] == 2:
            raise Died  # uploaded, not committed
        return files

    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        study = make_study(tmp_path, sim.base_url, days=4, window=1, output=s3.url("crash"))
        monkeypatch.setattr(target, dying)
        with pytest.raises(BaseException) as died:
            await run(sim, study)
        assert (
            died.group_contains(Died)
            if isinstance(died.value, BaseExceptionGroup)
            else (died.type is Died)
        )
        monkeypatch.setattr(target, real)
        with SqliteState(study.state_path) as state:
            committed = state.status().committed_plan_shards
            known = {f"crash/{f.path}" for f in state.files()}
        uploaded = {k for k in visible(s3, "crash") if k.endswith(".parquet")}
        assert committed < 4 and uploaded - known  # objects in the bucket the state never knew
        assert await run(sim, study) == EXIT_OK
        expected = oracle(sim, study)
    ids = read_s3(s3, "crash")
    assert len(ids) == len(set(ids)) and set(ids) == expected
    assert_only_committed(s3, "crash", study)
    assert verify_study(study)["ok"]


async def test_month_partitions_are_compacted_in_the_bucket(tmp_path: Path, s3: Bucket) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        study = make_study(
            tmp_path, sim.base_url, start=date(2022, 1, 20), days=20, window=3,
            partition_by=("create_month", "region_code"), output=s3.url("months"),
        )  # fmt: skip
        assert await run(sim, study) == EXIT_OK
        expected = oracle(sim, study)
    with SqliteState(study.state_path) as state:
        files = state.files()
    per_partition: dict[str, int] = {}
    for f in files:
        per_partition[f.partition] = per_partition.get(f.partition, 0) + 1
    assert per_partition and all(n == 1 for n in per_partition.values()), per_partition
    assert all(f.path.rpartition("/")[2].startswith("compacted-") for f in files)
    ids = read_s3(s3, "months")
    assert len(ids) == len(set(ids)) and set(ids) == expected
    assert_only_committed(s3, "months", study)


def _videos(facts: Any) -> list[int]:
    """Videos per day as the report counts them (read from the bucket's files)."""
    return [d.videos for d in facts.days]


def nightly_study(tmp_path: Path, base_url: str, url: str) -> Path:
    tables: dict[str, Any] = {
        "study": {
            "name": "nightly",
            "source": "research-api",
            "start_date": "2022-01-03",
            "end_date": "today",
            "window": "3d",
            "fields": ["id", "create_time", "region_code", "hashtag_names", "view_count"],
            "condition_groups": SEED_GROUPS,
        },
        "api": {"base_url": base_url, "max_concurrency": 3, "requests_per_second": 2000},
        "output": {"path": url, "history": True},
    }
    path = tmp_path / "study.toml"
    path.write_text(tomli_w.dumps(tables))
    return path


async def test_refreshes_replace_rows_in_the_bucket_and_keep_history(
    tmp_path: Path, s3: Bucket
) -> None:
    day = 86_400
    clock_start = epoch(date(2022, 1, 8)) + 2 * 3600 + 600
    async with running_simulator("clean", **SIM, indexing_lag=True, clock_start=clock_start) as sim:
        path = nightly_study(tmp_path, sim.base_url, s3.url("nightly"))
        superseded = 0
        for night in range(3):
            if night:
                sim.clock.advance(day)
            study = loads_study(path.read_text(), path, today=sim.clock.today())
            h = Harvest(study, CREDS, options(), clock=sim.clock.now)
            try:
                assert await h.run() == EXIT_OK
            finally:
                h.state.close()
            superseded += h.stats.superseded_rows
        now = sim.clock.now()
        expected = sim.oracle(
            SEED_GROUPS, epoch(date(2022, 1, 3)), epoch(study.end_date) + day, as_of=now
        )
    assert superseded > 0, "no refresh replaced a row"
    ids = read_s3(s3, "nightly")
    assert len(ids) == len(set(ids)) and set(ids) == expected
    assert_only_committed(s3, "nightly", study)
    history = ds.dataset(
        f"{s3.name}/nightly.history", filesystem=s3fs(s3), format="parquet", partitioning="hive"
    )
    assert history.count_rows() == superseded
    assert verify_study(study)["ok"]


async def test_no_secret_in_logs_state_or_parquet(tmp_path: Path, s3: Bucket) -> None:
    log = tmp_path / "run.log"
    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        study = make_study(tmp_path, sim.base_url, days=2, window=1, output=s3.url("secret"))
        assert await run(sim, study, log_file=log) == EXIT_OK
    places = [log, study.state_path]
    for key in visible(s3, "secret"):
        places_body = s3.client.get_object(Bucket=s3.name, Key=key)["Body"].read()
        assert SECRET_KEY.encode() not in places_body, key
    for place in places:
        if place.exists():
            assert SECRET_KEY.encode() not in place.read_bytes(), place


async def test_comments_of_videos_in_a_bucket_go_to_the_sibling_prefix(
    tmp_path: Path, s3: Bucket
) -> None:
    """An enrichment reads its targets from the video dataset in the bucket (pyarrow, DuckDB's
    Arrow scan) and writes its own dataset beside it: `<prefix>.comments`."""
    from tests.orchestrator.test_enrich import enrich_study, expected_rows

    async with running_simulator("clean", **SIM) as sim:
        study = enrich_study(
            tmp_path,
            sim.base_url,
            [{"kind": "comments", "where": "comment_count >= 5"}],
            days=2,
            output=s3.url("lab/videos"),
        )
        assert study.enrichments[0].dataset == f"s3://{s3.name}/lab/videos.comments"
        assert await run(sim, study) == EXIT_OK
        videos = ds.dataset(
            f"{s3.name}/lab/videos", filesystem=s3fs(s3), format="parquet", partitioning="hive"
        ).to_table(columns=["id", "comment_count"])
        targets = sorted(r["id"] for r in videos.to_pylist() if r["comment_count"] >= 5)
        expected, _ = expected_rows(sim, "comments", targets)
    assert targets, "no video with comments: the test would prove nothing"
    comments = ds.dataset(
        f"{s3.name}/lab/videos.comments", filesystem=s3fs(s3), format="parquet",
        partitioning="hive",
    ).to_table(columns=["video_id", "id"])  # fmt: skip
    assert comments.num_rows == sum(len(v) for v in expected.values())
    assert set(comments.column("video_id").to_pylist()) <= set(targets)
    assert (
        json.loads(
            s3.client.get_object(Bucket=s3.name, Key="lab/videos.comments/_harvest.json")[
                "Body"
            ].read()
        )["rows"]
        == comments.num_rows
    )
    checked = verify_study(study)
    assert checked["ok"] and checked["enrichments"][0]["ok"], checked["text"]
    assert not study.enrichments[0].output_path.exists()  # nothing written on the machine


def local_files(root: Path, pattern: str) -> list[str]:
    """The text of the files under `root` matching `pattern` (none when it does not exist)."""
    return [p.read_text() for p in root.glob(pattern)]


def s3_rows(bucket: Bucket, prefix: str) -> list[dict[str, Any]]:
    """A dataset's rows as pyarrow reads them from the bucket (`_staging/` skipped as readers
    skip it)."""
    dataset = ds.dataset(
        f"{bucket.name}/{prefix}", filesystem=s3fs(bucket), format="parquet", partitioning="hive"
    )
    return list(dataset.to_table().to_pylist())


async def test_enrichments_with_postgres_state_stage_in_the_bucket(
    tmp_path: Path, s3: Bucket, pg_url: str
) -> None:
    """With the state in PostgreSQL, an enrichment's pages are staged under its dataset's
    `_staging/` prefix, which every worker reaches; what a dead worker staged there is swept,
    and nothing is left under `_staging/` at the end."""
    from tests.orchestrator.test_enrich import assert_kind_equals_oracle, enrich_study

    async with running_simulator("clean", **SIM) as sim:
        study = enrich_study(
            tmp_path,
            sim.base_url,
            [
                {"kind": "comments", "where": "comment_count >= 3", "replies": True},
                {"kind": "users", "where": "region_code = 'NL'"},
            ],
            days=2,
            output=s3.url("lab/pg"),
            state_url=pg_url,
        )
        dead = "lab/pg.comments/_staging/comments-0123456789abcdef01234567/000000-dead.arrow"
        s3.client.put_object(Bucket=s3.name, Key=dead, Body=b"half of nothing")
        assert await run(sim, study) == EXIT_OK
        videos = s3_rows(s3, "lab/pg")
        vids = sorted({v["id"] for v in videos if v["comment_count"] >= 3})
        names = sorted({v["username"] for v in videos if v["region_code"] == "NL"})
        assert vids and names, "no targets: the test would prove nothing"
        comments = s3_rows(s3, "lab/pg.comments")
        rows, _ = assert_kind_equals_oracle(sim, study, "comments", vids, comments, replies=True)
        assert rows > len(vids)
        n_users, _ = assert_kind_equals_oracle(
            sim, study, "users", names, s3_rows(s3, "lab/pg.users")
        )
        assert n_users
    assert not [k for k in s3.listing() if "_staging" in k]
    # The pages went to the bucket: nothing was staged on the machine.
    assert not local_files(tmp_path, "**/*.arrow")
    checked = verify_study(study)
    assert checked["ok"] and all(e["ok"] for e in checked["enrichments"]), checked["text"]


async def test_quarantine_of_a_bucket_dataset_is_recorded_where_it_is(
    tmp_path: Path, s3: Bucket
) -> None:
    """Rows without an id stay on the machine, beside the state; `_harvest.json` in the bucket
    names that folder, not one beside the prefix where nothing is."""
    from tests.orchestrator.test_vce import harvest_renamed

    async with running_simulator("clean", **SIM, **FAST_TASKS) as sim:
        study = make_study(tmp_path, sim.base_url, source="pyrqs", days=3, output=s3.url("q/v"))
        code, renaming = await harvest_renamed(sim, study)
        assert code == EXIT_OK and renaming.orphans
    info = json.loads(s3.client.get_object(Bucket=s3.name, Key="q/v/_harvest.json")["Body"].read())
    where = Path(info["quarantine"])
    assert where.is_absolute(), info["quarantine"]
    lines = [json.loads(x) for p in local_files(where, "*.jsonl") for x in p.splitlines()]
    assert len(lines) == info["quarantined_records"] == renaming.orphans
    assert {x["reason"] for x in lines} == {"no id"}
    assert status_report(study)["quarantine"] == info["quarantine"]
    assert not [k for k in s3.listing() if k.endswith(".jsonl")]
