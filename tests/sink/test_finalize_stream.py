"""finalize_plan_shard in one streaming pass: with tiny buffers and row groups every partition
file still holds exactly its staged rows, and a failure part-way leaves nothing behind."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import harvester.sink.store as store_module
from harvester._exceptions import SinkError
from harvester.fields import DEFAULT_FIELDS
from harvester.sink import DatasetFile, Layout, finalize_plan_shard, layout, read_segments
from harvester.sink._files import publish as real_publish
from harvester.sink.partition import encode_value

from ._data import DAY, FULL, JAN1, stage_pages, video

PLAN = "20230101-20230106"
REGIONS = layout(DEFAULT_FIELDS, ("create_date", "region_code"))


def stage(tmp_path: Path, lay: Layout, days: int = 5, per_day: int = 60) -> tuple[Path, list[str]]:
    """Two leaves whose pages each span several days (and regions), in small pages."""
    staging = tmp_path / "staging"
    n = days * per_day
    recs = [video(i, JAN1 + (i * 7919) % (days * DAY)) for i in range(n)]
    half = JAN1 + (days * DAY) // 2
    first = [r for r in recs if r["create_time"] < half]
    second = [r for r in recs if r["create_time"] >= half]
    segs: list[str] = []
    for key, window, part in (
        ("20230101T000000-20230103T120000", (JAN1, half), first),
        ("20230103T120000-20230106T000000", (half, JAN1 + days * DAY), second),
    ):
        pages = [part[i : i + 17] for i in range(0, len(part), 17)]
        pages.append(part[:5])  # a repeat: normalise drops it as already seen
        segs += stage_pages(staging, lay, key, window, pages)
    return staging, segs


def staged_rows(staging: Path, segs: list[str]) -> list[dict[str, Any]]:
    table = pa.Table.from_batches(list(read_segments(staging, segs)))
    return sorted(plain(table.to_pylist()), key=lambda r: r["id"])


def plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with `_retrieved_at` as epoch microseconds (comparable across readers)."""
    out = []
    for r in rows:
        r = dict(r)
        at = r.get("_retrieved_at")
        if isinstance(at, datetime):
            r["_retrieved_at"] = at.astimezone(UTC).replace(tzinfo=None)
        out.append(r)
    return out


def utc_date(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir())


def read_back(root: Path, lay: Layout, files: list[DatasetFile]) -> list[dict[str, Any]]:
    """Every file read with pyarrow, with its partition values (as the path spells them)."""
    rows: list[dict[str, Any]] = []
    for f in files:
        table = pq.read_table(root / f.path)
        assert table.schema.remove_metadata().equals(lay.file_schema)
        assert table.num_rows == f.rows
        values = dict(seg.split("=", 1) for seg in f.partition.split("/"))
        assert list(values) == list(lay.partition_by)
        for r in table.to_pylist():
            r.update(values)
            rows.append(r)
    return sorted(plain(rows), key=lambda r: r["id"])


def as_paths(rows: list[dict[str, Any]], lay: Layout) -> list[dict[str, Any]]:
    """Staged rows with their partition values as the path spells them."""
    out = []
    for r in rows:
        r = dict(r)
        for p in lay.partition_by:
            r[p] = encode_value(r[p])
        out.append(r)
    return out


@pytest.mark.parametrize(
    ("lay", "row_group_rows", "buffer_bytes"),
    [
        (FULL, 7, 1),
        (FULL, 10_000, 1),
        (FULL, 10_000, 20_000),
        (REGIONS, 5, 4_096),
        (REGIONS, 10_000, 1),
    ],
    ids=[
        "tiny-groups-tiny-buffer",
        "big-groups-tiny-buffer",
        "buffer-20k",
        "regions",
        "regions-tiny-buffer",
    ],
)
def test_small_buffers_keep_every_row_once_in_its_partition(
    tmp_path: Path, lay: Layout, row_group_rows: int, buffer_bytes: int
) -> None:
    staging, segs = stage(tmp_path, lay)
    expected = staged_rows(staging, segs)
    assert len(expected) == 300
    root = tmp_path / "data"
    files = finalize_plan_shard(
        root, staging, lay, PLAN, segs, row_group_rows=row_group_rows, buffer_bytes=buffer_bytes
    )
    assert files_under(root) == sorted(f.path for f in files)
    assert len({f.partition for f in files}) == len(files) >= 5
    assert sum(f.rows for f in files) == 300

    # pyarrow, file by file: the staged rows exactly, each under the right partition.
    got = read_back(root, lay, files)
    assert got == as_paths(expected, lay)
    for r in got:
        assert r["create_date"] == utc_date(r["create_time"])

    # Row groups: never above the bound, and early flushes split files below it.
    groups: list[int] = []
    for f in files:
        meta = pq.ParquetFile(root / f.path).metadata
        groups += [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        assert sum(meta.row_group(i).num_rows for i in range(meta.num_row_groups)) == f.rows
    assert max(groups) <= row_group_rows
    if buffer_bytes < 100_000:
        assert any(pq.ParquetFile(root / f.path).metadata.num_row_groups > 1 for f in files), (
            "no early flush happened"
        )
        if row_group_rows >= 10_000:
            # Every group is smaller than the bound: only buffer flushes can have cut them.
            assert len(groups) > len(files)

    # DuckDB over the hive layout sees the same rows once, partition columns included.
    con = duckdb.connect()
    hive_types = ", ".join(f"'{p}': VARCHAR" for p in lay.partition_by)
    query = (
        f"SELECT id, create_time, username, {', '.join(lay.partition_by)} FROM read_parquet(?, "
        f"hive_partitioning = true, hive_types = {{{hive_types}}}) ORDER BY id"
    )
    duck = con.execute(query, [str(root / "**" / "*.parquet")]).fetchall()
    assert len(duck) == 300 and len({row[0] for row in duck}) == 300
    for row, want in zip(duck, expected, strict=True):
        assert row[:3] == (want["id"], want["create_time"], want["username"])
        assert row[3] == utc_date(want["create_time"])
        if "region_code" in lay.partition_by:
            assert row[4] == want["region_code"]


def test_flushing_early_changes_row_groups_not_contents(tmp_path: Path) -> None:
    staging, segs = stage(tmp_path, REGIONS)
    big = finalize_plan_shard(tmp_path / "big", staging, REGIONS, PLAN, segs)
    small = finalize_plan_shard(
        tmp_path / "small", staging, REGIONS, PLAN, segs, row_group_rows=3, buffer_bytes=1
    )
    assert [(f.path, f.rows) for f in big] == [(f.path, f.rows) for f in small]
    for a, b in zip(big, small, strict=True):
        ta = pq.read_table(tmp_path / "big" / a.path)
        tb = pq.read_table(tmp_path / "small" / b.path)
        assert ta.equals(tb)  # same rows in the same (staging) order
        assert pq.ParquetFile(tmp_path / "big" / a.path).metadata.num_row_groups == 1
    groups = [pq.ParquetFile(tmp_path / "small" / f.path).metadata.num_row_groups for f in small]
    assert sum(groups) > len(small)
    # The dataset as a whole, read with hive partitioning, is the same either way.
    read = [
        ds.dataset(tmp_path / d, format="parquet", partitioning="hive").to_table().sort_by("id")
        for d in ("big", "small")
    ]
    assert read[0].equals(read[1])


class Fail(Exception):
    pass


def failing_writer(monkeypatch: pytest.MonkeyPatch, *, fail_on: int, where: str) -> list[int]:
    """Make the Parquet writer fail on its `fail_on`-th `where` ("write" or "open", after the
    file was created); returns the call counter."""
    calls = [0]
    original = pq.ParquetWriter

    class Writer(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            if where == "open":
                calls[0] += 1
                if calls[0] == fail_on:
                    self.close()
                    raise OSError(errno.ENOSPC, "No space left on device", str(args[0]))

        def write_table(self, *args: Any, **kw: Any) -> None:
            if where == "write":
                calls[0] += 1
                if calls[0] == fail_on:
                    raise OSError(errno.ENOSPC, "No space left on device")
            super().write_table(*args, **kw)

    monkeypatch.setattr(pq, "ParquetWriter", Writer)  # as the sink sees it
    return calls


def count_writes(tmp_path: Path, staging: Path, segs: list[str], **kw: Any) -> tuple[int, int]:
    """(row-group writes, files) of a successful finalize with `kw`."""
    writes = [0]
    original = pq.ParquetWriter.write_table

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        writes[0] += 1
        original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pq.ParquetWriter, "write_table", counting)
        files = finalize_plan_shard(tmp_path / "probe", staging, REGIONS, PLAN, segs, **kw)
    return writes[0], len(files)


TINY: dict[str, Any] = {"row_group_rows": 4, "buffer_bytes": 2_048}


def test_a_failed_write_part_way_leaves_no_file(tmp_path: Path) -> None:
    staging, segs = stage(tmp_path, REGIONS)
    writes, n_files = count_writes(tmp_path, staging, segs, **TINY)
    assert writes > 2 * n_files > 10
    for fail_on in sorted({1, 2, n_files, writes // 2, writes - 1, writes}):
        root = tmp_path / f"data-{fail_on}"
        with pytest.MonkeyPatch.context() as mp:
            failing_writer(mp, fail_on=fail_on, where="write")
            with pytest.raises(SinkError, match="No space left"):
                finalize_plan_shard(root, staging, REGIONS, PLAN, segs, **TINY)
        assert files_under(root) == [], fail_on
    # The staging is left as it was: a retry finalizes everything.
    files = finalize_plan_shard(tmp_path / "retry", staging, REGIONS, PLAN, segs, **TINY)
    assert sum(f.rows for f in files) == 300


def test_a_failed_publish_takes_back_the_files_already_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging, segs = stage(tmp_path, FULL)
    root = tmp_path / "data"
    published: list[Path] = []

    def publish(tmp: Path, final: Path) -> None:
        if len(published) == 3:
            raise OSError(errno.EIO, "Input/output error", str(final))
        real_publish(tmp, final)
        published.append(final)

    monkeypatch.setattr(store_module, "publish", publish)
    with pytest.raises(SinkError, match="Input/output error"):
        finalize_plan_shard(root, staging, FULL, PLAN, segs, **TINY)
    assert len(published) == 3 and not any(p.exists() for p in published)
    assert files_under(root) == []


def test_an_exception_that_is_not_an_os_error_cleans_up_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging, segs = stage(tmp_path, REGIONS)
    calls = [0]
    original = pq.ParquetWriter.write_table

    def boom(self: Any, *args: Any, **kw: Any) -> None:
        calls[0] += 1
        if calls[0] == 5:
            raise Fail("interrupted")
        original(self, *args, **kw)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", boom)
    root = tmp_path / "data"
    with pytest.raises(Fail):
        finalize_plan_shard(root, staging, REGIONS, PLAN, segs, **TINY)
    assert files_under(root) == []


@pytest.mark.parametrize("fail_on", [1, 3])
def test_a_writer_that_fails_to_open_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_on: int
) -> None:
    staging, segs = stage(tmp_path, REGIONS)
    root = tmp_path / "data"
    failing_writer(monkeypatch, fail_on=fail_on, where="open")
    with pytest.raises(SinkError, match="No space left"):
        finalize_plan_shard(root, staging, REGIONS, PLAN, segs, **TINY)
    assert files_under(root) == []


_FINALIZE_WITH_FEW_FDS = """
import json, resource, sys
from pathlib import Path
from harvester.fields import DEFAULT_FIELDS
from harvester.sink import finalize_plan_shard, layout
tmp, segs = Path(sys.argv[1]), json.loads(sys.argv[2])
lay = layout(DEFAULT_FIELDS, ("create_date", "region_code"))
resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
files = finalize_plan_shard(tmp / "data", tmp / "staging", lay, "20230101-20230131", segs)
print(len(files), sum(f.rows for f in files))
"""


def test_a_shard_spanning_more_partitions_than_open_files_allowed(tmp_path: Path) -> None:
    days, regions = 20, 13  # 260 partitions, twice the limit the child sets
    recs = [
        video(i, JAN1 + (i % days) * DAY + i, region_code=f"R{i % regions}")
        for i in range(days * regions)
    ]
    segs = stage_pages(
        tmp_path / "staging",
        REGIONS,
        "20230101T000000-20230131T000000",
        (JAN1, JAN1 + 30 * DAY),
        [recs[i : i + 40] for i in range(0, len(recs), 40)],
    )
    proc = subprocess.run(
        [sys.executable, "-c", _FINALIZE_WITH_FEW_FDS, str(tmp_path), json.dumps(segs)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-800:]
    assert proc.stdout.split() == [str(days * regions), str(days * regions)]
