"""The dataset: final Parquet files per plan shard, stray cleanup and `_harvest.json`.

A plan shard's rows go to one file per partition, named after the plan shard
(`create_date=2023-01-05/20230101-20230131.parquet`), so finalizing it again replaces its
files instead of adding duplicates. Files are written under a hidden name that does not end in
`.parquet` (DuckDB's and Polars' `**/*.parquet` globs see hidden files) and renamed into place;
the state records them afterwards, and `cleanup_strays` removes whatever it does not know.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from harvester._exceptions import SinkError
from harvester.sink._files import check_key, publish, sink_errors
from harvester.sink.partition import partition_path
from harvester.sink.schema import Layout
from harvester.sink.staging import read_segments
from harvester.sink.store import DatasetStore, as_store

__all__ = [
    "MANIFEST",
    "ROW_GROUP_ROWS",
    "STAGING",
    "DatasetFile",
    "PartitionWriter",
    "cleanup_strays",
    "finalize_plan_shard",
    "write_manifest",
    "write_parquet",
]

MANIFEST = "_harvest.json"
#: Where workers that share a study stage their pages: inside the dataset, which every worker
#: reaches, under a name readers skip (pyarrow ignores `_` prefixes; globs ask for *.parquet).
STAGING = "_staging"


def reader_visible(rel: str) -> bool:
    """Whether a path under the dataset root is part of the dataset readers see."""
    return rel != MANIFEST and not rel.startswith(STAGING + "/")


#: Big enough for scans to be efficient, small enough that one buffered group stays in budget:
#: a group closes at whichever limit comes first.
ROW_GROUP_ROWS = 128 * 1024
ROW_GROUP_BYTES = 48 << 20
#: What a finalize buffers across all partitions before it writes a row group early.
FINALIZE_BUFFER_BYTES = 64 << 20
#: Partition files a finalize writes at once (each holds a descriptor until it is closed).
FINALIZE_OPEN_FILES = 64


@dataclass(frozen=True, slots=True)
class DatasetFile:
    """A final file: `path` is relative to the dataset root, `partition` its directory."""

    path: str
    partition: str
    rows: int


def _groups(batch: pa.RecordBatch, parts: tuple[str, ...]) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Split `batch` by partition directory (rows of one page usually share one or two)."""
    columns = [batch.column(p).to_pylist() for p in parts]
    if len(parts) == 1 and len(set(columns[0])) == 1:
        yield partition_path(((parts[0], columns[0][0]),)), batch
        return
    rows: dict[str, list[int]] = {}
    for i, key in enumerate(zip(*columns, strict=True)):
        path = partition_path(tuple(zip(parts, key, strict=True)))
        rows.setdefault(path, []).append(i)
    for path, idx in rows.items():
        yield path, batch.take(pa.array(idx, type=pa.int32()))


def write_parquet(
    batches: Iterable[pa.RecordBatch],
    store: DatasetStore | Path,
    rel: str,
    schema: pa.Schema,
    row_group_rows: int = ROW_GROUP_ROWS,
) -> int:
    """Write `batches` to `rel` in `store`, appearing only complete; return the row count.

    Batches are buffered up to one row group, so memory stays at one group whatever the size.
    """
    out = PartitionWriter(as_store(store), rel, schema, row_group_rows)
    try:
        for batch in batches:
            out.add(batch)
            if out.full:
                out.flush()
        out.publish()
    except BaseException:
        # A full disk must not leave a half-written file behind it (start-up would remove it,
        # but the space is wanted now).
        out.discard()
        raise
    return out.rows


class PartitionWriter:
    """One Parquet file written aside (`DatasetStore.writing`: a hidden temporary name, or a
    local file uploaded at the end), with the rows not yet written buffered until they make a
    row group (`row_group_rows` or ROW_GROUP_BYTES)."""

    def __init__(
        self, store: DatasetStore, rel: str, schema: pa.Schema, row_group_rows: int
    ) -> None:
        self.store = store
        self.rel = rel
        self.row_group_rows = row_group_rows
        self._target = store.writing(rel)
        self.tmp = self._target.__enter__()
        self.schema = schema
        try:
            self._writer: pq.ParquetWriter | None = pq.ParquetWriter(
                self.tmp,
                schema,
                compression="zstd",
                write_statistics=True,
            )
        except BaseException as e:
            self._target.__exit__(type(e), e, e.__traceback__)  # the caller never learns of it
            raise
        self._buffered: list[pa.RecordBatch] = []
        self.pending = self.pending_bytes = self.rows = 0

    @property
    def closed(self) -> bool:
        return self._writer is None

    @property
    def full(self) -> bool:
        """The buffered rows make a row group."""
        return self.pending >= self.row_group_rows or self.pending_bytes >= ROW_GROUP_BYTES

    def add(self, batch: pa.RecordBatch) -> int:
        """Buffer `batch`; returns the bytes it holds."""
        self._buffered.append(batch)
        self.pending += batch.num_rows
        self.pending_bytes += batch.nbytes
        return int(batch.nbytes)

    def flush(self) -> int:
        """Write the buffered rows as a row group; returns the bytes released."""
        released = self.pending_bytes
        if self.pending and self._writer is not None:
            table = pa.Table.from_batches(self._buffered, self.schema)
            self._writer.write_table(table, row_group_size=self.row_group_rows)
            self.rows += self.pending
        self._buffered, self.pending, self.pending_bytes = [], 0, 0
        return released

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def publish(self) -> None:
        """Flush, close, and give the file its final name (or upload it)."""
        self.flush()
        self.close()
        self._target.__exit__(None, None, None)

    def discard(self) -> None:
        """Close and remove the temporary file (a failed write)."""
        with contextlib.suppress(Exception):
            self.close()
        with contextlib.suppress(Exception):
            gone = SinkError(f"write of {self.rel} abandoned")
            self._target.__exit__(SinkError, gone, None)


def finalize_plan_shard(
    root: DatasetStore | Path,
    staging: DatasetStore | Path,
    layout: Layout,
    plan_key: str,
    segments: Sequence[str],
    *,
    row_group_rows: int = ROW_GROUP_ROWS,
    buffer_bytes: int = FINALIZE_BUFFER_BYTES,
    open_files: int = FINALIZE_OPEN_FILES,
) -> list[DatasetFile]:
    """Write the plan shard's staged `segments` (relative to `staging`) into the dataset: one
    Parquet file per partition, streaming.

    Each partition's rows are buffered until they make a full row group (`row_group_rows` or
    ROW_GROUP_BYTES); when the buffers of all partitions together pass `buffer_bytes`, the
    largest is written as a smaller row group, so memory stays flat however many partitions a
    shard spans. At most `open_files` partition files are written at once (one pass over the
    segments each). Returns the files for `StateStore.commit_plan_shard`.
    """
    check_key(plan_key)
    root, staging = as_store(root), as_store(staging)
    files: dict[str, PartitionWriter] = {}
    published: list[str] = []

    def writer(path: str) -> PartitionWriter:
        return PartitionWriter(
            root, f"{path}/{plan_key}.parquet", layout.file_schema, row_group_rows
        )

    with sink_errors(f"finalize plan shard {plan_key}"):
        try:
            # One pass over the segments per `open_files` partitions: nearly every shard spans
            # a few and needs one; a month of days × regions must not run out of descriptors.
            while _finalize_pass(
                staging, segments, layout, files, writer, buffer_bytes, open_files
            ):
                pass
            for f in files.values():
                published.append(f.rel)
                f.publish()
        except BaseException:
            # A finalize that fails (disk full, permissions) takes back the files it wrote:
            # readers never see part of a plan shard the state does not know, and verify holds;
            # a full disk must not keep half-written files either.
            for f in files.values():
                if f.rel not in published:
                    f.discard()
            with contextlib.suppress(OSError):
                root.delete(published)
            raise
    out = [DatasetFile(f"{path}/{plan_key}.parquet", path, f.rows) for path, f in files.items()]
    pa.default_memory_pool().release_unused()  # the pool would keep the freed buffers a while
    return sorted(out, key=lambda f: f.path)


def _finalize_pass(
    staging: DatasetStore,
    segments: Sequence[str],
    layout: Layout,
    files: dict[str, PartitionWriter],
    writer: Callable[[str], PartitionWriter],
    buffer_bytes: int,
    open_files: int,
) -> bool:
    """One pass over the segments: rows of the partitions opened in this pass (at most
    `open_files` new ones) are written, those of partitions written by an earlier pass skipped.
    True when a partition is left for another pass."""
    names = layout.file_schema.names
    more = False
    open_now: list[PartitionWriter] = []
    buffered = 0
    for batch in read_segments(staging, segments):
        for path, rows in _groups(batch, layout.partition_by):
            f = files.get(path)
            if f is None:
                if len(open_now) >= open_files:
                    more = True  # the next pass takes it
                    continue
                f = files[path] = writer(path)
                open_now.append(f)
            elif f.closed:
                continue  # written by an earlier pass
            buffered += f.add(rows.select(names))
            if f.full:
                buffered -= f.flush()
            while buffered > buffer_bytes:
                buffered -= max(open_now, key=lambda x: x.pending_bytes).flush()
    for f in open_now:
        f.flush()
        f.close()
    return more


def cleanup_strays(root: DatasetStore | Path, known: set[str]) -> list[str]:
    """Remove every file under `root` the state does not know (temporary files, files of an
    unrecorded finalize or compaction, objects a dead worker uploaded) and emptied
    directories; `_harvest.json` stays.

    Never touches anything outside `root`: no symlink is followed.
    """
    root = as_store(root)
    with sink_errors(f"clean dataset {root}"):
        # The staging area has its own sweep (`cleanup_staging`), against the segments.
        return root.sweep(known, keep=lambda rel: not reader_visible(rel))


def write_manifest(root: DatasetStore | Path, manifest: Mapping[str, object]) -> str:
    """Write `_harvest.json` atomically (readers skip names starting with `_`); returns where."""
    root = as_store(root)
    data = (json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n").encode()
    with sink_errors(f"write {root}/{MANIFEST}"):
        if root.local is None:
            root.write_bytes(MANIFEST, data)  # one PUT: atomic, last writer wins
            return f"{root}/{MANIFEST}"
        # One temporary name per writer: workers sharing a study (PostgreSQL state) write the
        # manifest at the same moments, and one's rename must not take the other's file away
        # (threads of one process too).
        final = root.local / MANIFEST
        tmp = root.local / f".{MANIFEST}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        root.local.mkdir(parents=True, exist_ok=True)
        try:
            tmp.write_bytes(data)
            publish(tmp, final)
        except BaseException:
            # A full disk fails the write half-way: the partial file must not stay behind
            # (verify would rightly call it a stray).
            tmp.unlink(missing_ok=True)
            raise
    return str(final)
