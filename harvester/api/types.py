"""Payloads the backends hand to the orchestrator: pages, resume points, task states."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Page", "Record", "Resume", "TaskStatus", "utcnow"]

#: One video as the API returned it (strings already cleaned of control characters).
Record = dict[str, Any]

TERMINAL_STATES = frozenset({"Completed", "AnalysisFailed", "Cancelled"})


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Resume:
    """Where to pick a window up again after a crash.

    REST resumes from `(cursor, search_id)`; RQS from `(task_id, cursor)` into the task's result.
    The default, all empty, means "from the start".
    """

    cursor: int = 0
    search_id: str | None = None
    task_id: int | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One answer page, deduplicated and cleaned.

    `cursor` / `search_id` / `task_id` say where the *next* page starts, so checkpointing
    `page.resume` together with `page.records` makes a crash lose nothing and repeat nothing.

    `restarted` is true on the first page after the backend had to start the window over (REST:
    the search_id was rejected; RQS: the task expired and was created again). The cursor went
    back to 0, but ids already delivered in this iteration (or passed in as `seen_ids`) are still
    filtered out, so the caller keeps its staged records and only replaces its resume point.

    `raw_count` counts what the API sent before dedupe; `records` may be shorter, even empty.
    For RQS, `total` is the task's record count and `saturated` says it reached `limit` (the
    task may have left matches out: split the window).

    `rows`, when set, holds the records instead of `records` (which is then empty): the backend
    decoded the page straight into Arrow, one struct per record in the catalogue's types for the
    fields asked for, strings cleaned and ids deduplicated as for `records`.
    """

    records: list[Record]
    cursor: int
    search_id: str | None
    has_more: bool
    raw_count: int
    fetched_at: datetime = field(default_factory=utcnow)
    restarted: bool = False
    #: Why it restarted (the API's error kind: `search_id_invalid`, `task_expired`, ...).
    restart_reason: str = ""
    task_id: int | None = None
    total: int | None = None
    saturated: bool = False
    rows: pa.StructArray | None = None

    @property
    def count(self) -> int:
        """How many records the page holds (after dedupe), whichever way they were decoded."""
        return len(self.rows) if self.rows is not None else len(self.records)

    def as_records(self) -> list[Record]:
        """The records as dicts, whichever way they were decoded."""
        return self.rows.to_pylist() if self.rows is not None else self.records

    @property
    def resume(self) -> Resume:
        return Resume(cursor=self.cursor, search_id=self.search_id, task_id=self.task_id)


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """A Research Query Service task's state, with the server's message on `AnalysisFailed`."""

    status: str
    message: str | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATES

    @property
    def completed(self) -> bool:
        return self.status == "Completed"
