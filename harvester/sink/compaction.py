"""Merge the files several plan shards wrote into one partition, swapping atomically.

Coarse partitions (`create_month`, `region_code`) receive one file per plan shard. Once every
shard writing there is committed, `prepare_compaction` merges them into one file in the staging
area, `swap_compaction` exchanges that directory with the partition's (`renameat2` with
`RENAME_EXCHANGE`: readers see the old files or the new one, never both), and the caller records
the change in state around the swap:

    c = prepare_compaction(root, staging, partition, files)
    state.begin_compaction(c.partition, c.new_file.path, c.new_file.rows, c.old_files)
    swap_compaction(root, staging, c)
    state.finish_compaction(c.partition)
    retire_compacted(root, c)
    discard_compaction(staging, c)

An object store has no folder to swap: the merged file waits in a local spool, the swap uploads
it under its new name (complete or not at all), the state's commit switches the partition to
it, and `retire_compacted` deletes the old objects (docs/design.md, "Datasets in object
storage", says what a reader sees meanwhile).

After a crash, a begun compaction is finished if its new file is in place, else abandoned;
either way `cleanup_strays` and `cleanup_staging` remove the leftovers.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import structlog

from harvester._exceptions import SinkError
from harvester.sink._files import fsync_dir, publish, sink_errors
from harvester.sink.dataset import ROW_GROUP_ROWS, DatasetFile, write_parquet
from harvester.sink.store import DatasetStore, LocalStore, as_store

__all__ = [
    "Compaction",
    "discard_compaction",
    "exchange",
    "prepare_compaction",
    "retire_compacted",
    "swap_compaction",
]

log = structlog.get_logger(__name__)
_WORK = "_compact"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@dataclass(frozen=True, slots=True)
class Compaction:
    """A prepared merge: `work` (relative to staging) holds the directory to swap in; for an
    object store, `spool` is the local folder the merged file waits in instead."""

    partition: str
    new_file: DatasetFile
    old_files: tuple[str, ...]
    work: str
    spool: Path | None = None


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths on one filesystem; False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EXDEV, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _batches(root: DatasetStore, files: Sequence[str]) -> Iterator[pa.RecordBatch]:
    for rel in files:
        with root.open_input(rel) as src, pq.ParquetFile(src) as f:
            yield from f.iter_batches(batch_size=64 * 1024)


def prepare_compaction(
    root: DatasetStore | Path,
    staging: DatasetStore | Path,
    partition: str,
    files: Sequence[str],
    *,
    row_group_rows: int = ROW_GROUP_ROWS,
) -> Compaction | None:
    """Merge `files` (relative to root, all in `partition`) into one file in the staging area.

    None when there is nothing to merge. Memory stays at one row group.
    """
    files = sorted(files)
    if len(files) < 2:
        return None
    if any(rel.rpartition("/")[0] != partition for rel in files):
        raise SinkError(f"compaction of {partition!r} given files from other partitions")
    root, staging = as_store(root), as_store(staging)
    digest = hashlib.sha256("\n".join(files).encode()).hexdigest()[:12]
    work = f"{_WORK}/{digest}"
    name = f"compacted-{digest}.parquet"
    spool: Path | None = None
    with sink_errors(f"compact {partition}"):
        local = staging.local
        if root.local is not None and local is not None:
            # Beside the dataset, on its filesystem: the swap is a rename.
            if (local / work).exists():
                shutil.rmtree(local / work)
            target = local / work / "partition"
            target.mkdir(parents=True)
        else:
            spool = target = Path(tempfile.mkdtemp(prefix="harvester-compact-"))
        with root.open_input(files[0]) as src:
            schema = pq.read_schema(src)
        rows = write_parquet(
            _batches(root, files), LocalStore(target), name, schema, row_group_rows
        )
    new = DatasetFile(f"{partition}/{name}", partition, rows)
    return Compaction(partition, new, tuple(files), work, spool)


def swap_compaction(root: DatasetStore | Path, staging: DatasetStore | Path, c: Compaction) -> None:
    """Put the merged file in place of the partition's files.

    With `renameat2` the swap is one atomic step. Elsewhere (another filesystem, another OS)
    the merged file is renamed in and the old files removed: readers may briefly see both.
    In an object store the merged file is uploaded beside the old ones (`retire_compacted`
    removes those once the state has switched).
    """
    root, staging = as_store(root), as_store(staging)
    if c.spool is not None:
        merged = c.spool / c.new_file.path.rpartition("/")[2]
        with sink_errors(f"upload compacted {c.partition}"):
            if not merged.exists() and root.exists(c.new_file.path):
                return  # uploaded by an earlier, interrupted attempt
            with root.writing(c.new_file.path) as tmp:
                shutil.move(merged, tmp)
        log.info("compaction_swapped", partition=c.partition, atomic=False, uploaded=True)
        return
    assert root.local is not None and staging.local is not None
    _swap_folders(root.local, staging.local, c)


def retire_compacted(root: DatasetStore | Path, c: Compaction) -> None:
    """Delete the files a committed compaction replaced, where the swap left them in place."""
    root = as_store(root)
    if c.spool is not None:
        with sink_errors(f"remove compacted files of {c.partition}"):
            root.delete(c.old_files)


def _swap_folders(root: Path, staging: Path, c: Compaction) -> None:
    live = root / c.partition
    target = staging / c.work / "partition"
    name = c.new_file.path.rpartition("/")[2]
    with sink_errors(f"swap compacted {c.partition}"):
        if not (target / name).exists() and (live / name).exists():
            return  # already swapped by an earlier, interrupted attempt
        if exchange(target, live):
            fsync_dir(live.parent)
            fsync_dir(target.parent)
            log.info("compaction_swapped", partition=c.partition, atomic=True)
            return
        try:
            (target / name).replace(live / name)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            tmp = live / f".{name}.tmp"  # another filesystem: copy under a hidden name first
            shutil.copyfile(target / name, tmp)
            publish(tmp, live / name)
        for rel in c.old_files:
            (root / rel).unlink(missing_ok=True)
        fsync_dir(live)
        log.warning("compaction_swapped", partition=c.partition, atomic=False)


def discard_compaction(staging: DatasetStore | Path, c: Compaction) -> None:
    """Remove the compaction's work directory (after the state recorded the swap)."""
    if c.spool is not None:
        shutil.rmtree(c.spool, ignore_errors=True)
        return
    staging = as_store(staging)
    with sink_errors(f"remove compaction work of {c.partition}"), contextlib.suppress(OSError):
        staging.delete_tree(c.work)
