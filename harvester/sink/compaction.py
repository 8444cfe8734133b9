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
    discard_compaction(staging, c)

After a crash, a begun compaction is finished if its new file is in place, else abandoned;
either way `cleanup_strays` and `cleanup_staging` remove the leftovers.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import structlog

from harvester._exceptions import SinkError
from harvester.sink._files import fsync_dir, publish, sink_errors
from harvester.sink.dataset import ROW_GROUP_ROWS, DatasetFile, write_parquet

__all__ = [
    "Compaction",
    "discard_compaction",
    "exchange",
    "prepare_compaction",
    "swap_compaction",
]

log = structlog.get_logger(__name__)
_WORK = "_compact"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@dataclass(frozen=True, slots=True)
class Compaction:
    """A prepared merge: `work` (relative to staging) holds the directory to swap in."""

    partition: str
    new_file: DatasetFile
    old_files: tuple[str, ...]
    work: str


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


def _batches(root: Path, files: Sequence[str]) -> Iterator[pa.RecordBatch]:
    for rel in files:
        with pq.ParquetFile(str(root / rel)) as f:
            yield from f.iter_batches(batch_size=64 * 1024)


def prepare_compaction(
    root: Path,
    staging: Path,
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
    digest = hashlib.sha256("\n".join(files).encode()).hexdigest()[:12]
    work = f"{_WORK}/{digest}"
    target = staging / work / "partition"
    name = f"compacted-{digest}.parquet"
    with sink_errors(f"compact {partition}"):
        if (staging / work).exists():
            shutil.rmtree(staging / work)
        target.mkdir(parents=True)
        schema = pq.read_schema(str(root / files[0]))
        rows = write_parquet(_batches(root, files), target / name, schema, row_group_rows)
    new = DatasetFile(f"{partition}/{name}", partition, rows)
    return Compaction(partition, new, tuple(files), work)


def swap_compaction(root: Path, staging: Path, c: Compaction) -> None:
    """Put the merged file in place of the partition's files.

    With `renameat2` the swap is one atomic step. Elsewhere (another filesystem, another OS)
    the merged file is renamed in and the old files removed: readers may briefly see both.
    """
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


def discard_compaction(staging: Path, c: Compaction) -> None:
    """Remove the compaction's work directory (after the state recorded the swap)."""
    with sink_errors(f"remove compaction work of {c.partition}"):
        shutil.rmtree(staging / c.work, ignore_errors=True)
