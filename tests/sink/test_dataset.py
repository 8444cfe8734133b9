from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from harvester.sink import (
    STAGING,
    DatasetFile,
    cleanup_strays,
    finalize_plan_shard,
    layout,
    verify,
    write_manifest,
)

from ._data import DAY, FULL, JAN1, stage_pages, video

PLAN = "20230101-20230103"


def build(tmp_path: Path, n: int = 300, **kw: object) -> tuple[Path, Path, list[DatasetFile]]:
    """Stage a plan shard of two leaves over three days and finalize it."""
    root, staging = tmp_path / "data", tmp_path / "staging"
    half = JAN1 + 36 * 3600
    recs = [video(i, JAN1 + i * (3 * DAY) // n) for i in range(n)]
    first = [r for r in recs if r["create_time"] < half]
    second = [r for r in recs if r["create_time"] >= half]
    segs = stage_pages(staging, FULL, "20230101T000000-20230102T120000", (JAN1, half),
                       [first[:50], first[40:]])  # fmt: skip
    segs += stage_pages(staging, FULL, "20230102T120000-20230104T000000", (half, JAN1 + 3 * DAY),
                        [second, recs])  # fmt: skip
    files = finalize_plan_shard(root, staging, FULL, PLAN, segs, **kw)  # type: ignore[arg-type]
    return root, staging, files


def test_every_reader_sees_the_same_rows_once(tmp_path: Path) -> None:
    root, staging, files = build(tmp_path)
    assert [f.path for f in files] == [
        f"create_date=2023-01-0{d}/{PLAN}.parquet" for d in (1, 2, 3)
    ]
    assert sum(f.rows for f in files) == 300
    write_manifest(root, {"study": "t", "fields": list(FULL.fields)})

    table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 300 and len(set(table.column("id").to_pylist())) == 300
    assert table.schema.remove_metadata() == FULL.file_schema.append(
        pa.field("create_date", pa.string())
    )
    glob = str(root / "**" / "*.parquet")
    con = duckdb.connect()
    count, distinct, days = con.execute(
        "SELECT count(*), count(DISTINCT id), count(DISTINCT create_date) "
        "FROM read_parquet(?, hive_partitioning = true, hive_types = {'create_date': VARCHAR})",
        [glob],
    ).fetchone()  # type: ignore[misc]
    assert (count, distinct, days) == (300, 300, 3)
    frame = pl.scan_parquet(glob, hive_partitioning=True).collect()
    assert frame.height == 300 and frame["id"].n_unique() == 300
    assert set(FULL.file_schema.names) <= set(frame.columns)
    # the same values, whichever reader
    ours = sorted(table.column("like_count").to_pylist())
    assert sorted(frame["like_count"].to_list()) == ours
    assert not list(staging.glob("_finalize/*"))


def test_files_are_readers_friendly(tmp_path: Path) -> None:
    root, _, files = build(tmp_path, n=3000, row_group_rows=400)
    meta = pq.ParquetFile(root / files[0].path).metadata
    assert meta.num_row_groups == -(-files[0].rows // 400)
    col = meta.row_group(0).column(0)
    assert col.compression == "ZSTD" and col.statistics is not None and col.statistics.has_min_max


def test_refinalizing_replaces_instead_of_duplicating(tmp_path: Path) -> None:
    root, _, files = build(tmp_path)
    root2, _, files2 = build(tmp_path)
    assert root2 == root and files2 == files
    report = verify(root, {f.path: f.rows for f in files})
    assert report.ok and report.rows == 300 and report.files == 3


def test_crash_before_the_state_commit_is_cleaned_up(tmp_path: Path) -> None:
    """Files renamed into place but never recorded are strays at the next start-up."""
    root, _, files = build(tmp_path)
    (root / "create_date=2023-01-02" / f".{PLAN}.parquet.tmp").write_bytes(b"PAR1 partial")
    # readers never see a temporary file, even a half-written one
    assert duckdb.connect().execute(
        f"SELECT count(*) FROM read_parquet('{root}/**/*.parquet')"
    ).fetchall() == [(300,)]
    assert ds.dataset(root, format="parquet").count_rows() == 300
    known = {files[0].path}
    removed = cleanup_strays(root, known)
    assert removed == sorted(
        [files[1].path, files[2].path, f"create_date=2023-01-02/.{PLAN}.parquet.tmp"]
    )
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "create_date=2023-01-01", files[0].path,
    ]  # fmt: skip


def test_staging_inside_the_dataset_is_invisible_to_readers(tmp_path: Path) -> None:
    """Workers sharing a study stage pages under `<dataset>/_staging/`: no reader, no verify and
    no stray sweep of the dataset may take them for part of it."""
    root, _, files = build(tmp_path)
    shared = root / STAGING
    segs = stage_pages(shared, FULL, "20230105-20230106", (JAN1 + 4 * DAY, JAN1 + 5 * DAY),
                       [[video(10_000 + i, JAN1 + 4 * DAY + i) for i in range(7)]])  # fmt: skip
    assert segs and all((shared / s).is_file() for s in segs)
    assert ds.dataset(root, format="parquet", partitioning="hive").count_rows() == 300
    assert duckdb.connect().execute(
        f"SELECT count(*) FROM read_parquet('{root}/**/*.parquet')"
    ).fetchall() == [(300,)]
    assert pl.scan_parquet(str(root / "**" / "*.parquet")).collect().height == 300
    assert verify(root, {f.path: f.rows for f in files}).ok
    assert cleanup_strays(root, {f.path for f in files}) == []
    assert all((shared / s).is_file() for s in segs)


def test_cleanup_never_leaves_the_root(tmp_path: Path) -> None:
    root, _, files = build(tmp_path)
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.parquet").write_bytes(b"x")
    (root / "link").symlink_to(outside)
    write_manifest(root, {"study": "t"})
    cleanup_strays(root, {f.path for f in files})
    assert (outside / "keep.parquet").exists() and not (root / "link").exists()
    assert (root / "_harvest.json").exists()
    assert json.loads((root / "_harvest.json").read_text()) == {"study": "t"}


def test_hostile_partition_values_stay_inside(tmp_path: Path) -> None:
    lay = layout(["region_code"], ("region_code",))
    root, staging = tmp_path / "data", tmp_path / "staging"
    values = ["../../etc", "a/b", "\x00", "x" * 10_000, ".", "..", None, "", "US"]
    recs = [video(i, JAN1 + i, region_code=v) for i, v in enumerate(values)]
    segs = stage_pages(staging, lay, PLAN, (JAN1, JAN1 + 3 * DAY), [recs])
    files = finalize_plan_shard(root, staging, lay, PLAN, segs)
    for f in files:
        assert (root / f.path).resolve().is_relative_to(root.resolve())
    assert not (tmp_path / "etc").exists()
    got = (
        duckdb.connect()
        .execute(
            f"SELECT id, region_code FROM read_parquet('{root}/**/*.parquet', hive_partitioning=1)"
        )
        .fetchall()
    )
    by_id = dict(got)
    expect = {r["id"]: r["region_code"] for r in recs}
    for i, v in expect.items():
        if v in ("", None):
            assert by_id[i] is None
        elif v == "\x00":
            assert by_id[i] is None  # cleaned to "" first
        elif len(v) < 64:
            assert by_id[i] == v  # decoded back exactly
    table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
    assert sorted(table.column("region_code").drop_null().to_pylist()) == sorted(
        v for v in by_id.values() if v is not None
    )


def test_verify_finds_what_is_wrong(tmp_path: Path) -> None:
    root, _, files = build(tmp_path)
    expected = {f.path: f.rows for f in files}
    dup = root / "create_date=2023-01-01" / "copy.parquet"
    dup.write_bytes((root / files[0].path).read_bytes())
    expected_with_dup = {**expected, "create_date=2023-01-01/copy.parquet": files[0].rows}
    report = verify(root, expected_with_dup, schema=FULL.file_schema)
    assert report.duplicate_ids == files[0].rows and len(report.duplicate_examples) == 10
    assert not report.ok
    report = verify(root, {**expected, files[1].path: 1, "gone.parquet": 5})
    assert report.strays == ("create_date=2023-01-01/copy.parquet",)
    assert report.missing == ("gone.parquet",)
    assert report.row_mismatches == {files[1].path: (1, files[1].rows)}
    pq.write_table(pa.table({"id": [1]}), root / "create_date=2023-01-01" / "copy.parquet")
    report = verify(root, expected_with_dup, schema=FULL.file_schema)
    assert report.schema_mismatches == ("create_date=2023-01-01/copy.parquet",)


@pytest.mark.parametrize("partition_by", [("create_month",), ("create_year", "region_code")])
def test_coarser_partitions(tmp_path: Path, partition_by: tuple[str, ...]) -> None:
    lay = layout(["region_code"], partition_by)
    root, staging = tmp_path / "data", tmp_path / "staging"
    recs = [video(i, JAN1 + i * 3600) for i in range(100)]
    segs = stage_pages(staging, lay, PLAN, (JAN1, JAN1 + 5 * DAY), [recs])
    files = finalize_plan_shard(root, staging, lay, PLAN, segs)
    if partition_by == ("create_month",):
        assert [f.path for f in files] == [f"create_month=2023-01/{PLAN}.parquet"]
    else:
        assert {f.partition for f in files} == {
            f"create_year=2023/region_code={c}" for c in ("US", "GB", "DE")
        }
    assert verify(root, {f.path: f.rows for f in files}).ok


def test_workers_writing_the_manifest_at_once_never_collide(tmp_path: Path) -> None:
    """Workers sharing a study each write `_harvest.json` at the end of their run."""
    import threading

    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(30):
                write_manifest(tmp_path, {"study": "t", "writer": n, "i": i})
        except BaseException as e:  # collected for the assertion below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert json.loads((tmp_path / "_harvest.json").read_text())["i"] == 29
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_harvest.json"]
