"""Per-leaf staging segments: each page lands as one small Arrow IPC file.

Segments live outside the dataset readers scan (beside the state file, or under the dataset's
`_staging/` prefix when workers share the study), so a reader never sees a partial shard. A
segment appears only complete (`DatasetStore.writing`: renamed into place, or uploaded); the state
transaction that records it also advances the leaf's cursor, and at start-up any segment the
state does not know is removed (`cleanup_staging`), so every page is staged exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from harvester.sink._files import check_key, sink_errors
from harvester.sink.store import DatasetStore, as_store

__all__ = [
    "Segment",
    "cleanup_staging",
    "read_ids",
    "read_segments",
    "remove_leaves",
    "write_segment",
]

#: Uncompressed: a segment lives only until its plan shard is finalized, and LZ4 cost more CPU
#: (about 12 ms for a 10,000-record page) than the Parquet write of the same rows; unmapped
#: columns are also read back without copying.
_OPTIONS = pa.ipc.IpcWriteOptions(compression=None)


@dataclass(frozen=True, slots=True)
class Segment:
    """A staged page: `path` is relative to the staging dir (what the state records)."""

    path: str
    rows: int


def write_segment(
    staging: DatasetStore | Path, leaf_key: str, seq: int, batch: pa.RecordBatch, *, tag: str = ""
) -> Segment:
    """Stage `batch` as `<leaf_key>/<seq:06d>.arrow`, durably; rewriting a seq replaces it.

    With `tag` (a worker's, when workers share the staging) the name is
    `<seq:06d>-<tag>.arrow`: a worker presumed dead that writes late can never replace the
    segment of the worker that took its leaf over.
    """
    rel = f"{check_key(leaf_key)}/{seq:06d}{'-' + check_key(tag) if tag else ''}.arrow"
    with (
        sink_errors(f"stage page {seq} of {leaf_key}"),
        as_store(staging).writing(rel) as tmp,
        pa.OSFile(tmp, "wb") as f,
        pa.ipc.new_file(f, batch.schema, options=_OPTIONS) as w,
    ):
        w.write_batch(batch)
    return Segment(rel, int(batch.num_rows))


def read_segments(
    staging: DatasetStore | Path, paths: Iterable[str], columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """Stream the batches of `paths` in order, one segment at a time (memory-mapped when
    local)."""
    store = as_store(staging)
    for rel in paths:
        with sink_errors(f"read staged segment {rel}"), store.open_input(rel) as src:
            reader = pa.ipc.open_file(src)
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                yield batch.select(columns) if columns is not None else batch


def read_ids(staging: DatasetStore | Path, paths: Iterable[str]) -> set[int]:
    """The ids a leaf has staged so far: its seen-set after a restart."""
    seen: set[int] = set()
    for batch in read_segments(staging, paths, ["id"]):
        seen.update(batch.column(0).to_pylist())
    return seen


def remove_leaves(staging: DatasetStore | Path, leaf_keys: Iterable[str]) -> None:
    """Delete the staging of leaves whose plan shard is committed."""
    store = as_store(staging)
    for key in leaf_keys:
        with sink_errors(f"remove staging of {key}"):
            store.delete_tree(check_key(key))


def cleanup_staging(staging: DatasetStore | Path, known: set[str]) -> list[str]:
    """Remove every file under `staging` the state does not know (relative POSIX paths), and
    emptied directories; leftovers of an interrupted compaction go the same way."""
    store = as_store(staging)
    with sink_errors(f"clean staging {store}"):
        removed = store.sweep(known)
        if store.local is None and not store.files():
            # pyarrow marks a "folder" whose last object it deleted with a zero-byte
            # `folder/` key: an empty staging area leaves none behind.
            store.delete_tree("")
        return removed
