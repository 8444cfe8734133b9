"""The state store: a study's durable memory (shards, cursors, staged pages, files, quota)."""

from __future__ import annotations

from harvester.state._ledger import utc_day
from harvester.state._open import open_store, store_location
from harvester.state.base import (
    ErrorCount,
    FileLike,
    FileRecord,
    LeaseHeld,
    LeaseLost,
    PendingCompaction,
    PlannedShard,
    Restart,
    SegmentRecord,
    ShardRecord,
    StateStore,
    Status,
    StatusSummary,
    Usage,
    WindowHarvest,
    WorkerUsage,
)
from harvester.state.sqlite import SqliteState

__all__ = [
    "ErrorCount",
    "FileLike",
    "FileRecord",
    "LeaseHeld",
    "LeaseLost",
    "PendingCompaction",
    "PlannedShard",
    "Restart",
    "SegmentRecord",
    "ShardRecord",
    "SqliteState",
    "StateStore",
    "Status",
    "StatusSummary",
    "Usage",
    "WindowHarvest",
    "WorkerUsage",
    "open_store",
    "store_location",
    "utc_day",
]
