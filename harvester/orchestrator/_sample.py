"""What a leaf does with a page besides staging it: cap a test-stage sample, quarantine rows.

Kept apart from `_leaf.py` so the page loop there stays the one place that orders the steps.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

import structlog

from harvester._quarantine import quarantine_dir, write_quarantine
from harvester.sink import PageResult

__all__ = ["forget_quarantine", "keep_sample", "quarantine_page"]

log = structlog.get_logger("harvester.leaf")


def keep_sample(result: PageResult, room: int, leaf_key: str) -> PageResult:
    """At most `room` more rows for a test-stage window.

    A task returns at most its limit, but a task that expired and was created again draws a
    new random sample: the window keeps what it staged and tops it up only to the limit, so no
    window's sample is larger than any other's.
    """
    room = max(0, room)
    if result.row_count <= room:
        return result
    log.info("sample_capped", leaf=leaf_key, rows=result.row_count, kept=room)
    return dataclasses.replace(result, batch=result.batch.slice(0, room))


def quarantine_page(
    output_path: Path, leaf_key: str, seq: int, result: PageResult, retrieved_at: datetime
) -> Path | None:
    """Keep the page's rows that have no usable id or create_time beside the dataset."""
    if not result.rejected:
        return None
    folder = quarantine_dir(output_path)
    path = write_quarantine(folder, leaf_key, seq, result.rejected, retrieved_at=retrieved_at)
    log.warning(
        "records_quarantined",
        leaf=leaf_key,
        count=len(result.rejected),
        path=str(path),
        reason="no usable id or create_time: kept beside the dataset, not in it",
    )
    return path


def forget_quarantine(output_path: Path, leaf_key: str) -> None:
    """A split leaf's children fetch its window again: its quarantined rows would repeat."""
    folder = quarantine_dir(output_path)
    if folder.is_dir():
        for path in folder.glob(f"{leaf_key}-*.jsonl"):
            path.unlink(missing_ok=True)
