"""The sink side of a run: a plan shard's files into the dataset, compaction, the manifest.

Each step is written so a crash at any instant leaves the dataset readable and the state able
to finish or undo it at the next start (see docs/design.md, "Crash safety").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

import anyio
import structlog

from harvester._quarantine import quarantine_info
from harvester._version import __version__, written_by
from harvester.config import Study
from harvester.orchestrator._ledger import RunStats
from harvester.orchestrator._settle import settling
from harvester.plan import DAY, PlanShard
from harvester.plan.sample import completeness
from harvester.sink import (
    DatasetFile,
    Layout,
    discard_compaction,
    finalize_plan_shard,
    prepare_compaction,
    remove_leaves,
    swap_compaction,
    write_manifest,
)
from harvester.sink.compaction import retire_compacted
from harvester.sink.history import keep_history
from harvester.sink.store import DatasetStore, open_dataset
from harvester.state import StateStore

__all__ = ["Publisher", "partition_span"]

log = structlog.get_logger("harvester.publish")


def partition_span(partition: str) -> tuple[int, int] | None:
    """The [start, end) epoch range of a partition whose first key is a creation date."""
    name, _, value = partition.split("/", 1)[0].partition("=")
    try:
        if name == "create_date":
            first = date.fromisoformat(value)
            last = first + timedelta(days=1)
        elif name == "create_month":
            year, month = (int(v) for v in value.split("-"))
            first, last = date(year, month, 1), date(year + month // 12, month % 12 + 1, 1)
        elif name == "create_year":
            first, last = date(int(value), 1, 1), date(int(value) + 1, 1, 1)
        else:
            return None
    except ValueError:
        return None
    epoch = date(1970, 1, 1)
    return (first - epoch).days * DAY, (last - epoch).days * DAY


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class Publisher:
    """Commits plan shards into the dataset for one run."""

    def __init__(
        self,
        study: Study,
        state: StateStore,
        layout: Layout,
        dataset: DatasetStore,
        staging: DatasetStore,
        stats: RunStats,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.study = study
        self.clock = clock
        self.state = state
        self.layout = layout
        self.dataset = dataset
        self.history = open_dataset(study.history) if study.history is not None else None
        self.staging = staging
        self.stats = stats
        #: Plan shards committed before (refreshes, completed windows): only their finalize
        #: looks for earlier files to replace (set at start-up; a lookup per commit would cost
        #: a scan of every file of a big study).
        self.harvested_before: set[str] = set()
        self._finalizing: set[str] = set()
        self._compacting: set[str] = set()
        #: One plan shard written at a time: each buffers up to a row group (ROW_GROUP_BYTES),
        #: so leaves finishing together must not multiply that by the number of workers.
        self._writer = anyio.CapacityLimiter(1)

    def recover_compactions(self) -> None:
        # A compaction interrupted after its swap is finished; one interrupted before it is
        # dropped (the old files are still what state knows; the merged file is a stray).
        for pending in self.state.pending_compactions():
            if self.dataset.exists(pending.new_path):
                self.state.finish_compaction(pending.partition)
            else:
                self.state.abort_compaction(pending.partition)

    def write_manifest(self, shards: tuple[PlanShard, ...] | None = None) -> None:
        study = self.study
        summary = self.state.status()
        manifest: dict[str, Any] = {
            "study": study.name,
            "source": study.source,
            "fingerprint": study.fingerprint(),
            "fields": list(study.fields),
            "partition_by": list(study.partition_by),
            "start_date": study.start_date.isoformat(),
            "end_date": study.end_date.isoformat(),
            "window_days": study.window_days,
            "query": (
                study.seed_query.to_json()
                if study.seed_query is not None
                else study.rest_query.to_json()
                if study.rest_query is not None
                else None
            ),
            "harvester_version": __version__,
            "written_by": written_by(),
            "plan_shards": summary.plan_shards,
            "committed_plan_shards": summary.committed_plan_shards,
            "files": summary.files,
            "rows": summary.dataset_rows,
            # How approximate the public API was: returned records the exact query dropped.
            "dropped_by_exact_filter": summary.filtered,
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        manifest.update(completeness(study, summary.committed_plan_shards))
        manifest.update(self._settling_info())
        manifest.update(quarantine_info(study.output_path, study.output_url))
        if shards is not None:
            manifest["windows"] = [s.key for s in shards]
        else:
            manifest["windows"] = [s.key for s in self.state.shards() if s.parent_key is None]
        write_manifest(self.dataset, manifest)

    def _settling_info(self) -> dict[str, Any]:
        """Up to which day the counts are final, and what later runs will still refresh."""
        study = self.study
        status = settling(study, self.state, self.clock())
        through = status.settled_through()
        next_refresh = status.next_refresh()
        info: dict[str, Any] = {
            "settle_days": study.settle_days,
            "settled_through": through.isoformat() if through else None,
            "settled_windows": status.settled_count,
            "unsettled_windows": len(status.unsettled),
            "next_refresh": _iso(next_refresh),
        }
        if study.relative:
            info["date_rules"] = {"start_date": study.start_rule, "end_date": study.end_rule}
        if study.history is not None:
            info["history_path"] = study.history
        return info

    def ready_plan_shards(self) -> list[str]:
        return [
            s.key
            for s in self.state.shards()
            if s.parent_key is None and s.committed_at is None and self.state.plan_ready(s.key)
        ]

    async def finalize(self, plan_key: str) -> None:
        if plan_key in self._finalizing:
            return
        self._finalizing.add(plan_key)
        try:
            # Workers sharing the study: one finalizes a plan shard, the others leave it.
            with self.state.exclusive(f"finalize:{plan_key}") as mine:
                if mine and self.state.plan_ready(plan_key):
                    files = await self._finalize(plan_key)
                else:
                    return
        finally:
            self._finalizing.discard(plan_key)
        await self.compact({f.partition for f in files})

    async def _finalize(self, plan_key: str) -> list[DatasetFile]:
        segments = [s.path for s in self.state.segments(plan_key=plan_key)]
        # A refresh (or a window completing a short one): the files of the earlier harvest
        # stay readable until the new ones take their place.
        before = (
            [f for f in self.state.files() if f.plan_key == plan_key]
            if plan_key in self.harvested_before
            else []
        )
        previous = {f.path for f in before}
        if previous and self.history is not None:
            # Rows fetched since the refresh began are its own (a crash after the rename).
            began = [s.started_at for s in self.state.shards(plan_key=plan_key) if s.started_at]
            since = datetime.fromtimestamp(min(began), UTC) if began else None
            kept = await anyio.to_thread.run_sync(
                partial(keep_history, before=since),
                self.dataset,
                self.history,
                sorted(previous),
            )
            if kept:
                log.info("history_kept", shard=plan_key, rows=kept)
        files = await anyio.to_thread.run_sync(
            finalize_plan_shard,
            self.dataset,
            self.staging,
            self.layout,
            plan_key,
            segments,
            limiter=self._writer,
        )
        leaves = self.state.commit_plan_shard(plan_key, files, at=self.clock())
        remove_leaves(self.staging, leaves)
        # The earlier harvest's files the new one did not overwrite (a partition it no longer
        # has, a completed window's old name): the state forgot them with the commit, and a
        # crash before this line leaves them to start-up's sweep.
        self.dataset.delete(sorted(previous - {f.path for f in files}))
        if previous:
            self.stats.refreshed_rows += sum(f.rows for f in files)
            self.stats.superseded_rows += sum(f.rows for f in before)
        self.stats.plan_committed += 1
        self.stats.plan_committed_this_run += 1
        for f in files:
            log.info("file_committed", shard=plan_key, path=f.path, rows=f.rows)
        return files

    async def compact(self, touched: set[str] | None = None) -> None:
        """Merge partitions that several plan shards wrote into (coarse partitions), so readers
        find a few large files rather than one per window.

        With `touched` (after a plan shard's commit) only those partitions whose dates every
        committed plan shard covers are merged: nothing will write into them again. Without it
        (the end of a run) every partition is.
        """
        if touched is None and not self.state.alone:
            # Other workers may still write into any partition (the swap replaces the whole
            # partition folder): until every plan shard is committed, only complete ones.
            summary = self.state.status()
            if summary.committed_plan_shards < summary.plan_shards:
                touched = {f.partition for f in self.state.files()}
        candidates = {f.partition for f in self.state.files()} if touched is None else touched
        for partition in sorted(candidates):
            if partition in self._compacting:
                continue
            # Read the files now, not before the loop: another caller may have compacted this
            # partition while an earlier one was merged (the old names are gone). A partition
            # of one file (the usual case) costs this one query and nothing more.
            paths = [f.path for f in self.state.files(partition)]
            if len(paths) < 2:
                continue
            if touched is not None and not self.partition_complete(partition):
                continue
            if touched is None and not self.partition_settled(partition):
                continue
            self._compacting.add(partition)
            try:
                with self.state.exclusive(f"compact:{partition}") as mine:
                    # Read again under the lock: another worker may have merged it meanwhile.
                    paths = [f.path for f in self.state.files(partition)]
                    if mine and len(paths) >= 2:
                        await self.compact_one(partition, paths)
            finally:
                self._compacting.discard(partition)

    def partition_complete(self, partition: str) -> bool:
        span = partition_span(partition)
        if span is None:
            return False  # not a date partition: any window may still write into it
        lo, hi = span
        return all(
            s.committed_at is not None
            for s in self.state.shards()
            if s.parent_key is None and s.start < hi and s.end > lo
        ) and self.partition_settled(partition)

    def partition_settled(self, partition: str) -> bool:
        """Whether no window that may write into `partition` will be harvested again: merging
        rows of several windows into one file must wait until none of them is refreshed (a
        refresh replaces its own files only)."""
        study = self.study
        if study.settle_days == 0 and not study.relative:
            return True
        lo, hi = partition_span(partition) or (0, 2**62)
        plan = [s for s in self.state.shards() if s.parent_key is None]
        if study.relative and plan and max(s.end for s in plan) <= hi:
            return False  # the last window: a moving end date may still complete it
        wait = study.settle_days * DAY
        # Settled: committed (its last harvest), at least settle_days after its end.
        return all(
            s.committed_at is not None and s.committed_at >= s.end + wait
            for s in plan
            if s.start < hi and s.end > lo
        )

    async def compact_one(self, partition: str, paths: list[str]) -> None:
        root, staging = self.dataset, self.staging
        c = await anyio.to_thread.run_sync(prepare_compaction, root, staging, partition, paths)
        if c is None:
            return
        self.state.begin_compaction(partition, c.new_file.path, c.new_file.rows, c.old_files)
        try:
            await anyio.to_thread.run_sync(swap_compaction, root, staging, c)
            # The switch, in one transaction: from here the merged file is the partition.
            self.state.finish_compaction(partition)
            # An object store's old files are still there (no folder swap): readers listing
            # the partition meanwhile see its rows twice (docs/design.md).
            await anyio.to_thread.run_sync(retire_compacted, root, c)
        finally:
            discard_compaction(staging, c)
        log.info("partition_compacted", partition=partition, files=len(paths), rows=c.new_file.rows)
