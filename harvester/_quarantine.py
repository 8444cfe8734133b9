"""Records the dataset cannot hold, kept beside it instead of dropped.

A record without a usable id (or create_time) cannot be deduplicated, partitioned or assigned
to a window, so it never enters the dataset; but nothing the API delivered is silently lost.
Each such record is written, as received, to `<dataset>.quarantine/<leaf>-<page>.jsonl`: a
folder beside the dataset root, so readers that scan the dataset never see it. For a dataset in
a bucket the folder stays on the machine, beside the state (`Study.output_path`).

One file per page, named by its leaf and page number and written aside then renamed: a page
fetched again after a crash rewrites the same file instead of adding to it. (A module of its
own, free of Arrow, so that `status` can count what is kept without loading the sink.)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from harvester._exceptions import SinkError

__all__ = [
    "QUARANTINE_SUFFIX",
    "count_quarantined",
    "quarantine_dir",
    "quarantine_info",
    "write_quarantine",
]

QUARANTINE_SUFFIX = ".quarantine"
#: Shard keys come from windows; anything else must never become a file name.
_KEY = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,127}")


def quarantine_dir(output_path: Path) -> Path:
    """`data/my-study` → `data/my-study.quarantine` (outside the dataset root)."""
    return output_path.with_name(output_path.name + QUARANTINE_SUFFIX)


def _reason(record: object) -> str:
    if not isinstance(record, dict):
        return "not an object"
    if record.get("id") is None:
        return "no id"
    if record.get("create_time") is None:
        return "no create_time"
    return "id or create_time is not an integer"


def write_quarantine(
    folder: Path,
    leaf_key: str,
    seq: int,
    records: Sequence[object],
    *,
    retrieved_at: datetime,
) -> Path:
    """Write `records` (one JSON object per line, with why and where they came from)."""
    if not _KEY.fullmatch(leaf_key):
        raise SinkError(f"not a shard key: {leaf_key!r}")
    final = folder / f"{leaf_key}-{seq:06d}.jsonl"
    tmp = final.with_name(f".{final.name}.tmp")
    stamp = retrieved_at.isoformat()
    lines = [
        json.dumps(
            {"reason": _reason(r), "shard": leaf_key, "retrieved_at": stamp, "record": r},
            ensure_ascii=False,
            default=repr,
        )
        for r in records
    ]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(final)
    except OSError as e:
        raise SinkError(
            f"cannot quarantine {len(records)} record(s) of {leaf_key}: {e.strerror or e} "
            f"({e.filename or ''})"
        ) from e
    return final


def count_quarantined(folder: Path) -> int:
    """Records kept in `folder` (0 when there is none)."""
    if not folder.is_dir():
        return 0
    total = 0
    for path in folder.glob("*.jsonl"):
        with path.open("rb") as f:
            total += sum(1 for line in f if line.strip())
    return total


def quarantine_info(output_path: Path, output_url: str | None = None) -> dict[str, Any]:
    """For `_harvest.json` and `status`: how many records were kept apart, and where: relative
    to the dataset root, or, for a dataset in a bucket (`output_url`), the folder on the
    machine that kept them (`output_path` is then a local folder beside the state)."""
    folder = quarantine_dir(output_path)
    n = count_quarantined(folder)
    where = str(folder.absolute()) if output_url is not None else f"../{folder.name}"
    return {"quarantined_records": n, "quarantine": where if n else None}
