"""The history dataset: rows a refresh superseded, kept beside the main dataset.

A refreshed window's new files replace its old ones; with `[output] history = true` the old
rows are first copied to `<dataset>.history/retrieved_date=YYYY-MM-DD/<partition>/` (the day
they were fetched, then the main dataset's own partitions), so a researcher can follow how a video's
counts grew. The history lives beside the dataset, not inside it: readers that scan the
dataset with `**/*.parquet` never see a superseded row. A copy is written once, under a name
fixed by what it holds, so a crash and a second try never duplicate it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harvester.sink._files import sink_errors
from harvester.sink.dataset import write_parquet
from harvester.sink.store import DatasetStore, as_store

__all__ = ["HISTORY_PARTITION", "keep_history"]

HISTORY_PARTITION = "retrieved_date"


def keep_history(
    root: DatasetStore | Path,
    history: DatasetStore | Path,
    paths: Iterable[str],
    *,
    before: datetime | None = None,
) -> int:
    """Copy the rows of dataset files `paths` (relative to `root`) into `history`, partitioned
    by the day each row was retrieved; returns the rows copied (0 for copies already made).

    Only rows retrieved `before` the refresh began are copied: after a crash between the new
    files' rename and their commit, those files already hold the refresh's own rows."""
    copied = 0
    root, history = as_store(root), as_store(history)
    with sink_errors(f"keep superseded rows in {history}"):
        for rel in paths:
            if not root.exists(rel):
                continue
            with root.open_input(rel) as source:
                table = pq.read_table(source, partitioning=None)
            if before is not None:
                table = table.filter(pc.less(table.column("_retrieved_at"), pa.scalar(before)))
            if not table.num_rows:
                continue
            retrieved = table.column("_retrieved_at")
            # The harvest the file holds names its copy: the same file copied twice (a crash,
            # a second try) lands on the same name; the next refresh's rows on another.
            latest = pc.max(retrieved).as_py()
            name = f"{Path(rel).stem}.{latest:%Y%m%dT%H%M%S%f}.parquet"
            days = pc.cast(retrieved, pa.date32())
            for day in pc.unique(days).to_pylist():
                parent = Path(rel).parent.as_posix()
                target = f"{HISTORY_PARTITION}={day.isoformat()}/{parent}/{name}"
                if history.exists(target):
                    continue
                part = table.filter(pc.equal(days, pa.scalar(day, pa.date32())))
                copied += write_parquet(part.to_batches(), history, target, table.schema)
    return copied
