"""What the orchestrator needs from a state store, and the records it gets back.

SQLite serves one machine (`SqliteState`); PostgreSQL serves a lab's workers on any machines
(`PostgresState`). Both implement this protocol and pass one contract test suite; every
operation is one short transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, Self

from harvester._exceptions import StateError

if TYPE_CHECKING:
    from harvester.state.enrich import EnrichState


class LeaseLost(StateError):
    """Another worker took the leaf over (this worker's lease ran out): stop working on it."""


class LeaseHeld(StateError):
    """The leaf is not this worker's to run: another live worker runs it, or has already
    finished, split or parked it."""


Status = Literal["pending", "running", "done", "split", "parked"]


@dataclass(frozen=True, slots=True)
class PlannedShard:
    """A plan shard to add: whole-day window, half-open `[start, end)` epoch seconds."""

    key: str
    start: int
    end: int


def check_children(parent: ShardRecord, children: Sequence[PlannedShard]) -> list[PlannedShard]:
    """`children` sorted, or StateError unless they replace `parent` exactly: either they tile
    its window in time (no gap, no overlap), or each covers its whole window under a distinct
    key (the sub-queries of a window cut by the values of an IN list, whose union it is)."""
    ordered = sorted(children, key=lambda c: (c.start, c.key))
    bad = StateError(f"children of {parent.key} do not tile its window")
    if len(ordered) < 2 or any(c.start >= c.end for c in ordered):
        raise bad
    if all((c.start, c.end) == (parent.start, parent.end) for c in ordered):
        keys = {c.key for c in ordered}
        if len(keys) != len(ordered) or parent.key in keys:
            raise bad
        return ordered
    edges = [parent.start] + [c.end for c in ordered]
    if any(c.start != e for c, e in zip(ordered, edges, strict=False)) or edges[-1] != parent.end:
        raise bad
    return ordered


@dataclass(frozen=True, slots=True)
class ShardRecord:
    """One shard: a plan shard (`parent_key` None, `plan_key == key`) or a leaf of one.

    `cursor` with `search_id` resumes a public-API window; with `task_id` it is the RQS result
    cursor. `committed_at` is set on a plan shard once its files are in the dataset;
    `started_at` when the shard was first started (None until then, and for a shard an older
    harvester started).
    """

    key: str
    parent_key: str | None
    plan_key: str
    start: int
    end: int
    status: Status
    task_id: str | None
    search_id: str | None
    cursor: int | None
    attempts: int
    last_error: str | None
    error_kind: str | None
    records: int
    pages: int
    updated_at: float
    committed_at: float | None = None
    #: Records the public API returned for this leaf that the study's exact query dropped.
    filtered: int = 0
    started_at: float | None = None


@dataclass(frozen=True, slots=True)
class Restart:
    """A leaf fetched again from cursor 0, `count` times on UTC `day`, for `reason` (the API's
    error kind: an expired search id, an expired RQS task)."""

    leaf_key: str
    reason: str
    day: str
    count: int


@dataclass(frozen=True, slots=True)
class SegmentRecord:
    path: str
    leaf_key: str
    plan_key: str
    seq: int
    rows: int


@dataclass(frozen=True, slots=True)
class FileRecord:
    """A committed dataset file, relative to the dataset root."""

    path: str
    plan_key: str | None
    partition: str
    rows: int


class FileLike(Protocol):
    """A dataset file as the sink describes it (`harvester.sink.DatasetFile`)."""

    @property
    def path(self) -> str: ...
    @property
    def partition(self) -> str: ...
    @property
    def rows(self) -> int: ...


@dataclass(frozen=True, slots=True)
class PendingCompaction:
    partition: str
    new_path: str
    rows: int
    old_paths: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Usage:
    """One UTC day of the quota ledger: requests reserved or made, records delivered."""

    day: str
    requests: int
    records: int
    exhausted: bool


@dataclass(frozen=True, slots=True)
class WorkerUsage:
    """One study's (and one worker's) part of a ledger's day, for `harvester quota`."""

    day: str
    study: str
    worker: str
    requests: int
    records: int


@dataclass(frozen=True, slots=True)
class WindowHarvest:
    """One commit of a plan shard: its harvest began with its first leaf (`started_at`, None
    in a state from before harvests were recorded) and ended when its files were committed."""

    plan_key: str
    started_at: float | None
    committed_at: float
    rows: int


@dataclass(frozen=True, slots=True)
class ErrorCount:
    """Errors of one kind in one UTC hour (`hour`: epoch seconds of its start)."""

    hour: int
    kind: str
    count: int


@dataclass(frozen=True, slots=True)
class StatusSummary:
    shards: Mapping[str, int]
    plan_shards: int
    committed_plan_shards: int
    records: int
    pages: int
    files: int
    dataset_rows: int
    today: Usage
    errors: Mapping[str, int] = field(default_factory=dict)
    #: Records the public API returned that the study's exact query dropped (all leaves).
    filtered: int = 0


class StateStore(Protocol):
    """The orchestrator's durable memory of a study. Every method is one transaction."""

    def open_study(
        self, study: str, fingerprint: str, version: str, *, replan: bool = False
    ) -> None:
        """Create or reopen the study's state; a different fingerprint → StudyChangedError."""

    def lock(self) -> None:
        """Take the run lock (StateError if another live process holds it); with PostgreSQL,
        join the study's other workers (exclusively when alone, until `open_to_others`)."""

    @property
    def alone(self) -> bool:
        """Whether no other worker can be running this study (start-up may then recover from
        a crash: reset every running leaf, sweep files the state does not know)."""
        ...

    def open_to_others(self) -> None:
        """Start-up recovery is done: other workers may join from now on."""

    def take_alone(self) -> bool:
        """Hold the study exclusively again if no other worker is at work (the end of a run:
        what is left in the staging area is then nobody's); True when it does. Workers that
        start meanwhile wait to join until this one closes."""
        ...

    def exclusive(self, name: str) -> AbstractContextManager[bool]:
        """Whether this worker may do job `name` now (False while another worker does it)."""
        ...

    def heartbeat(self) -> list[str]:
        """Renew the leases of the leaves this worker runs; returns their keys."""
        ...

    def claim_leaf(self) -> ShardRecord | None:
        """Lease the next leaf no live worker holds (pending, or its lease ran out)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def add_plan_shards(self, shards: Iterable[PlannedShard]) -> int: ...

    def split(self, key: str, children: Sequence[PlannedShard]) -> list[str]: ...

    def shard(self, key: str) -> ShardRecord: ...

    def shards(
        self, status: Status | None = None, plan_key: str | None = None
    ) -> list[ShardRecord]: ...

    def start_leaf(self, key: str) -> ShardRecord: ...

    def requeue_leaf(self, key: str) -> None: ...

    def reset_running(self) -> int: ...

    def checkpoint_page(
        self,
        leaf_key: str,
        *,
        segment: str | None,
        rows: int,
        cursor: int | None,
        search_id: str | None = None,
        task_id: str | None = None,
        filtered: int = 0,
    ) -> None: ...

    def mark_done(self, leaf_key: str) -> None: ...

    def park(self, leaf_key: str, kind: str, message: str) -> None: ...

    def record_error(self, kind: str, leaf_key: str | None = None, message: str = "") -> None: ...

    def retry_parked(self) -> int: ...

    def restart_leaf(self, leaf_key: str, *, task_id: str | None = None) -> None: ...

    def record_restart(self, leaf_key: str, reason: str, day: str) -> int: ...

    def restarts(self) -> list[Restart]: ...

    def segments(
        self, *, leaf_key: str | None = None, plan_key: str | None = None
    ) -> list[SegmentRecord]: ...

    def plan_ready(self, plan_key: str) -> bool: ...

    def committed_costs(self) -> list[tuple[str, int, int]]:
        """(plan key, records, pages) of every committed plan shard, its leaves summed."""
        ...

    def commit_plan_shard(
        self, plan_key: str, files: Iterable[FileLike], *, at: float | None = None
    ) -> list[str]: ...

    def reopen_plan_shard(self, plan_key: str) -> list[str]:
        """A committed plan shard back to one pending leaf (a refresh); its files stay."""
        ...

    def supersede_plan_shard(self, old_key: str, new: PlannedShard) -> list[str]:
        """`new` (same start, later end) takes over `old_key`'s files and history."""
        ...

    def files(self, partition: str | None = None) -> list[FileRecord]: ...

    def known_files(self) -> set[str]: ...

    def known_segments(self) -> set[str]: ...

    def begin_compaction(
        self, partition: str, new_path: str, rows: int, old_paths: Sequence[str]
    ) -> None: ...

    def finish_compaction(self, partition: str) -> None: ...

    def abort_compaction(self, partition: str) -> None: ...

    def pending_compactions(self) -> list[PendingCompaction]: ...

    def reserve(self, day: str, requests: int = 1, *, cap: int | None = None) -> bool: ...

    def settle(self, day: str, *, records: int) -> None: ...

    def release(self, day: str, requests: int = 1) -> None: ...

    def exhaust(self, day: str) -> None: ...

    def usage(self, day: str) -> Usage: ...

    def usage_by_worker(self, day: str) -> list[WorkerUsage]: ...

    def usage_by_study(self) -> list[WorkerUsage]:
        """Every UTC day of the ledger by study (a pool's studies), oldest first; `worker` is
        empty."""
        ...

    def quota_days(self) -> list[Usage]:
        """Every UTC day of the ledger, oldest first."""
        ...

    def error_hours(self) -> list[ErrorCount]:
        """Errors per UTC hour and kind, oldest first (the history behind `status().errors`)."""
        ...

    def window_harvests(self) -> list[WindowHarvest]:
        """Every commit of a plan shard, oldest first."""
        ...

    def status(self, day: str | None = None) -> StatusSummary: ...

    def enrichments(self, *, daily_requests: int, daily_records: int) -> EnrichState:
        """The study's enrichment state (its `[[enrich]]` blocks' targets and files, and the
        followers/following lists' own daily ledger, capped as given)."""
        ...
