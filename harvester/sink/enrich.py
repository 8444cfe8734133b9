"""Enrichment datasets: one hive-partitioned Parquet dataset per kind, beside the videos.

`data/nl-election` → `data/nl-election.comments/`, `data/nl-election.users/`, ...: a reader's
`**/*.parquet` over the videos never picks them up. Each kind's schema comes from the kind
catalogue (`harvester.kinds`): the target column first (`video_id`, `username`,
`playlist_id`: the key DuckDB joins on), the kind's fields, then the same provenance columns as
the videos (`_retrieved_at`, `_shard` — here the target —, `_source`, `_extra`). Files are
partitioned by `retrieved_date` (statistics change after retrieval, and every kind has it).

Pages are staged per target exactly like video pages; done targets are then published in
batches: one file per batch and partition, written under a temporary name and renamed, recorded
in the state afterwards (a file the state does not know is removed at start-up).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from harvester._arrow import arrow_type, clean_strings
from harvester.kinds import Kind
from harvester.sink._files import sink_errors
from harvester.sink.dataset import _groups, write_parquet
from harvester.sink.records import _column, to_json
from harvester.sink.staging import read_segments, write_segment
from harvester.sink.store import DatasetStore, as_store

__all__ = [
    "PARTITION",
    "dataset_path",
    "enrich_schema",
    "normalise_targets",
    "publish_batch",
    "rewrite_without",
    "segment_key",
    "segment_keys",
    "stage_page",
]

PARTITION = "retrieved_date"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def dataset_path(videos: Path, kind: str) -> Path:
    """The default folder of a kind's dataset: a sibling named after the video folder."""
    return videos.with_name(f"{videos.name}.{kind}")


def enrich_schema(kind: Kind, *, with_partition: bool = True) -> pa.Schema:
    cols = [pa.field(name, arrow_type(t), nullable=name != kind.target) for name, t in kind.columns]
    cols += [
        pa.field("_retrieved_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("_shard", pa.string(), nullable=False),
        pa.field("_source", pa.string(), nullable=False),
        pa.field("_extra", pa.string()),
    ]
    if with_partition:
        cols.append(pa.field(PARTITION, pa.string(), nullable=False))
    return pa.schema(cols)


def segment_key(kind: str, target: str) -> str:
    """A staging folder name for any target (usernames can hold anything)."""
    return f"{kind}-{hashlib.sha256(target.encode()).hexdigest()[:24]}"


def normalise_targets(
    kind: Kind,
    records: Sequence[dict[str, Any]],
    *,
    target: Any,
    shard: str,
    source: str,
    retrieved_at: datetime,
) -> pa.RecordBatch:
    """One page of `target`'s records as a batch in the kind's schema. Values that do not fit
    their column, and fields the catalogue does not know, go to `_extra` as JSON."""
    renames = dict(kind.renames)
    schema = enrich_schema(kind)
    rows = [{renames.get(k, k): v for k, v in r.items()} for r in records]
    n = len(rows)
    known = {name for name, _ in kind.columns}
    extras: dict[int, dict[str, object]] = {}
    for i, r in enumerate(rows):
        more = {k: v for k, v in r.items() if k not in known}
        if more:
            extras[i] = more
    micros = (retrieved_at - _EPOCH) // timedelta(microseconds=1)
    day = retrieved_at.astimezone(UTC).strftime("%Y-%m-%d")
    arrays: list[pa.Array] = []
    for f in schema:
        name = f.name
        if name == kind.target:
            values = [r.get(name) for r in rows]
            values = [target if v is None else v for v in values]
            col = _column(values, f.type, name, extras)
            # The key back to the target is never lost: a value that did not fit is the target.
            if col.null_count:
                col = pa.array([target] * n, type=f.type)
            arrays.append(clean_strings(col))
        elif name in known:
            arrays.append(clean_strings(_column([r.get(name) for r in rows], f.type, name, extras)))
        elif name == "_retrieved_at":
            arrays.append(pa.repeat(pa.scalar(micros, f.type), n))
        elif name == "_shard":
            arrays.append(pa.repeat(pa.scalar(shard, pa.string()), n))
        elif name == "_source":
            arrays.append(pa.repeat(pa.scalar(source, pa.string()), n))
        elif name == "_extra":
            arrays.append(
                pa.array(
                    [to_json(extras[i]) if i in extras else None for i in range(n)],
                    type=pa.string(),
                )
            )
        else:
            arrays.append(pa.repeat(pa.scalar(day, pa.string()), n))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def stage_page(
    staging: DatasetStore | Path, kind: str, target: str, seq: int, batch: pa.RecordBatch
) -> str:
    """Stage one page of a target; returns the segment's path relative to `staging`."""
    return write_segment(staging, segment_key(kind, target), seq, batch).path


def publish_batch(
    staging: DatasetStore | Path, root: DatasetStore | Path, kind: Kind, segments: Sequence[str]
) -> list[tuple[str, int]]:
    """Write the rows of `segments` into the dataset at `root`: one new file per partition
    (a batch is small: a few hundred targets). Returns (path relative to root, rows) of each."""
    file_schema = enrich_schema(kind, with_partition=False)
    batches = list(read_segments(staging, segments))
    if not batches:
        return []
    table = pa.Table.from_batches(batches).combine_chunks()
    name = f"part-{uuid.uuid4().hex[:16]}.parquet"
    out: list[tuple[str, int]] = []
    for batch in table.to_batches():
        for part, rows in _groups(batch, (PARTITION,)):
            data = pa.RecordBatch.from_arrays(
                [rows.column(f.name) for f in file_schema], schema=file_schema
            )
            rel = f"{part}/{name}"
            with sink_errors(f"write {root}/{rel}"):
                out.append((rel, write_parquet([data], root, rel, file_schema)))
    return out


def rewrite_without(
    root: DatasetStore | Path, kind: Kind, files: Sequence[str], targets: Iterable[str]
) -> tuple[list[str], list[tuple[str, int]]]:
    """The dataset's `files` that hold rows of `targets`, and their rewrites without those rows
    (a new name in the same partition; none when nothing is left), written hidden and renamed.
    Returns (files to replace, (path, rows) of the rewrites): the caller records both in one
    state transaction, then deletes the replaced files."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    wanted = pa.array(
        [int(t) for t in targets] if kind.target_type == "int64" else list(targets),
        type=pa.int64() if kind.target_type == "int64" else pa.string(),
    )
    if not len(wanted):
        return [], []
    file_schema = enrich_schema(kind, with_partition=False)
    root = as_store(root)
    replaced: list[str] = []
    out: list[tuple[str, int]] = []
    for rel in files:
        with sink_errors(f"read {root}/{rel}"), root.open_input(rel) as src:
            keys = pq.read_table(src, columns=[kind.target]).column(0)
        if not pc.any(pc.is_in(keys, value_set=wanted)).as_py():
            continue
        with sink_errors(f"read {root}/{rel}"), root.open_input(rel) as src:
            table = pq.read_table(src, schema=file_schema)
        kept = table.filter(pc.invert(pc.is_in(table.column(kind.target), value_set=wanted)))
        replaced.append(rel)
        if kept.num_rows:
            new = f"{rel.rpartition('/')[0]}/part-{uuid.uuid4().hex[:16]}".lstrip("/")
            new += ".parquet"
            rows = write_parquet(kept.combine_chunks().to_batches(), root, new, file_schema)
            out.append((new, rows))
    return replaced, out


def segment_keys(staging: DatasetStore | Path, segments: Iterable[str], kind: Kind) -> set[Any]:
    """The record keys a target has staged so far (its seen-set after a restart)."""
    column = dict(kind.renames).get(kind.record_key, kind.record_key)
    if not kind.record_key:
        return set()
    seen: set[Any] = set()
    for batch in read_segments(staging, list(segments), [column]):
        seen.update(batch.column(0).to_pylist())
    return seen
