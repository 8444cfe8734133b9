"""One leaf (a window of the study) from its checkpoint to done, split or parked.

Per page: re-check against the study's exact query (the public API matches approximately),
normalise, stage the segment, then checkpoint segment, drop count and resume point in one state
transaction. A crash between staging and checkpoint leaves a segment state does not
know (removed at start-up) and the page is fetched again: at most one page per leaf in flight.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict

import anyio
import structlog

from harvester._exceptions import ApiError, AuthError, QuotaExhausted, ServerError, TransientError
from harvester.api import Page, Resume
from harvester.orchestrator._sample import forget_quarantine, keep_sample, quarantine_page
from harvester.plan import DAY, Window, parse_leaf_key, split_window, sub_key
from harvester.plan.sample import sample_plan
from harvester.sink import (
    DatasetStore,
    PageResult,
    normalise_page,
    normalise_rows,
    read_ids,
    write_segment,
)
from harvester.state import PlannedShard, ShardRecord, utc_day

if TYPE_CHECKING:
    from harvester.api import Backend
    from harvester.config import Study
    from harvester.orchestrator._budget import DayBudget
    from harvester.orchestrator._ledger import QuotaGate, RunStats
    from harvester.sink import Layout
    from harvester.state import StateStore

log = structlog.get_logger("harvester.leaf")

#: Pages larger than this are normalised in a worker thread, off the event loop.
THREAD_ROWS = 2_000


class _PageOptions(TypedDict):
    """What `normalise_page` and `normalise_rows` are told about the page besides its rows."""

    leaf_key: str
    window: tuple[int, int]
    source: str
    retrieved_at: datetime


@dataclass(frozen=True, slots=True)
class LeafOutcome:
    done: bool = False
    children: tuple[str, ...] = ()
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class LeafPolicy:
    """What to do with a leaf that keeps failing or meets a spent quota."""

    #: Attempts of a leaf failing with transient errors before it is parked.
    max_attempts: int = 5
    #: Seconds before such a leaf is tried again.
    retry_delay: float = 30.0
    #: On a spent quota: "wait" for 00:00 UTC, or "exit" (the run stops with 75).
    on_exhausted: str = "wait"
    #: Tag of this worker's staged segments (several workers share a PostgreSQL study).
    segment_tag: str = ""


class LeafRunner:
    """Runs leaves with what it is handed, never reaching back into the run that made it."""

    def __init__(
        self,
        study: Study,
        backend: Backend[Any],
        gate: QuotaGate,
        *,
        state: StateStore,
        staging: DatasetStore,
        layout: Layout,
        stats: RunStats,
        policy: LeafPolicy,
        budget: DayBudget | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.study = study
        self.backend = backend
        self.gate = gate
        self.state = state
        self.staging = staging
        self.layout = layout
        self.stats = stats
        self.policy = policy
        self.budget = budget
        #: The run's clock (a test's simulated one): the UTC day a restart is recorded on.
        self.clock = clock
        self.rest = study.source == "research-api"
        self.post_filter: Any = None
        if self.rest:
            # Sent: the superset the API can ask; kept: only what passes the exact query.
            assert study.translation is not None
            self.query: Any = study.translation.rest
            self.post_filter = study.translation.post_filter
        else:
            self.query = study.seed_query
        #: The IN list a day too big for a day's quota is cut by (public API), or None.
        self.value_split = study.value_split if self.rest else None
        self.fetch_fields = study.fetch_fields
        self.strip = frozenset(self.fetch_fields) - frozenset(study.fields)
        #: Test stage: a task's records are a sample of the window, never split, at most this many.
        plan = sample_plan(study)
        self.sample_limit = plan.limit_per_window if plan else None

    async def run(self, key: str) -> LeafOutcome:
        """Fetch the leaf; on quota exhaustion wait (or raise, with on_exhausted = "exit")."""
        while True:
            try:
                return await self._fetch(key)
            except QuotaExhausted as exc:
                self.state.requeue_leaf(key)
                if self.policy.on_exhausted == "exit":
                    self.gate.record(exc)
                    raise
                await self.gate.wait(exc)
            except AuthError:
                # Wrong credentials are the run's failure, not the window's: leave it pending
                # for the run with the right ones (parking it would need --retry-failed).
                self.state.requeue_leaf(key)
                raise
            except ApiError as exc:
                return self._failed(key, exc)

    async def _fetch(self, key: str) -> LeafOutcome:
        state = self.state
        leaf = state.start_leaf(key)
        segments = [s.path for s in state.segments(leaf_key=key)]
        # What this leaf staged before a restart: the backend leaves these ids out.
        seen = read_ids(self.staging, segments) if segments else set()
        resume = Resume(
            cursor=leaf.cursor or 0,
            search_id=leaf.search_id,
            task_id=int(leaf.task_id) if leaf.task_id else None,
        )
        log.info("shard_submitted", leaf=key, resume_cursor=resume.cursor, staged=len(seen))
        seq = leaf.pages
        query, keep = self.query, None
        index = parse_leaf_key(key).index
        if index is not None:
            # One value of the study's IN list: its sub-query, keeping only the records no
            # earlier value matches (so the union of the window's sub-queries has no repeats).
            assert self.value_split is not None, f"{key} names a sub-query the query has not"
            query, keep = self.value_split.sub_query(index), self.value_split.keeps(index)
        pages = self.backend.pages(
            query, leaf.start, leaf.end, self.fetch_fields, resume=resume, seen_ids=seen
        )
        async for page in pages:
            if page.saturated and self.sample_limit is None:
                children = self.split(leaf, "saturated", min_seconds=1)
                if children:
                    return LeafOutcome(children=children)
                log.warning("shard_saturated_unsplittable", leaf=key, total=page.total)
            if page.restarted:
                children = self._restarted(leaf, page)
                if children:
                    return LeafOutcome(children=children)
            result, filtered = await self._normalise(leaf, page, keep)
            if self.sample_limit is not None:
                result = keep_sample(result, self.sample_limit - state.shard(key).records, key)
            quarantine_page(self.study.output_path, key, seq, result, page.fetched_at)
            segment = None
            if result.row_count:
                stage = functools.partial(
                    write_segment, self.staging, key, seq, result.batch, tag=self.policy.segment_tag
                )
                # An upload waits on the network: the other leaves go on meanwhile.
                staged = stage() if self.staging.local else await anyio.to_thread.run_sync(stage)
                segment = staged.path
            state.checkpoint_page(
                key,
                segment=segment,
                rows=result.row_count,
                cursor=page.cursor,
                search_id=page.search_id,
                task_id=str(page.task_id) if page.task_id is not None else None,
                filtered=filtered,
            )
            seq += 1
            if self.budget is not None:
                self.budget.page(key, result.row_count)
            self.stats.pages += 1
            self.stats.records += result.row_count
            self.stats.filtered += filtered
            log.info(
                "page_fetched",
                leaf=key,
                rows=result.row_count,
                received=page.raw_count,
                dropped_outside=result.outside,
                dropped_invalid=result.invalid,
                dropped_by_exact_filter=filtered,
                cursor=page.cursor,
                has_more=page.has_more,
            )
            if result.unknown_fields:
                log.warning("unknown_fields_kept", leaf=key, fields=sorted(result.unknown_fields))
            # The backend's page slots bound the pages in memory only if no one else holds
            # them: this page and its batch must be gone while the next one is fetched.
            del page, result
        state.mark_done(key)
        log.info("shard_done", leaf=key, records=state.shard(key).records)
        return LeafOutcome(done=True)

    def _restarted(self, leaf: ShardRecord, page: Page) -> tuple[str, ...]:
        """Record the restart; the second for the same reason splits the window instead of
        fetching it whole once more (its children are a new plan: none has restarted)."""
        reason = page.restart_reason or "restarted"
        times = self.state.record_restart(leaf.key, reason, utc_day(self.clock()))
        log.warning(
            "window_restarted", leaf=leaf.key, task_id=page.task_id, reason=reason, times=times
        )
        if times < 2:
            return ()
        why = f"restarted twice: {reason}"
        children = self.split(leaf, why, min_seconds=DAY if self.rest else 1)
        if not children:
            children = self.split_by_value(leaf, why)
        if not children:
            log.warning("window_restarted_unsplittable", leaf=leaf.key, reason=reason)
        return children

    async def _normalise(
        self, leaf: ShardRecord, page: Page, keep: Callable[[Any], bool] | None = None
    ) -> tuple[PageResult, int]:
        """The page normalised, and how many of its records failed the exact query. A
        sub-query's `keep` drops, uncounted, the records an earlier value's sub-query keeps."""
        options: _PageOptions = {
            "leaf_key": leaf.key,
            "window": (leaf.start, leaf.end),
            "source": self.study.source,
            "retrieved_at": page.fetched_at,
        }
        rows = page.rows
        filtered = 0
        work: Callable[[], PageResult]
        if rows is not None and self.post_filter is None and keep is None:
            # Decoded into Arrow by the backend: typed and clean, only rows to drop (and the
            # fetched-only fields, which the layout does not name, are left out).
            work = functools.partial(normalise_rows, rows, self.layout, **options)
            count = len(rows)
        else:
            records: list[Any] = page.as_records()
            if self.post_filter is not None:
                returned = len(records)
                records = [r for r in records if self.post_filter.matches(r)]
                filtered = returned - len(records)
            if keep is not None:
                records = [r for r in records if keep(r)]
            if self.strip:
                records = [{k: v for k, v in r.items() if k not in self.strip} for r in records]
            work = functools.partial(normalise_page, records, self.layout, **options)
            count = len(records)
        if count > THREAD_ROWS:
            return await anyio.to_thread.run_sync(work), filtered
        return work(), filtered

    def split(
        self, leaf: ShardRecord, why: str, *, min_seconds: int, at: int | None = None
    ) -> tuple[str, ...]:
        """Split the leaf in halves, or at `at` (a first piece sized for the day's budget)."""
        halves: tuple[Window, Window] | None
        if at is not None and leaf.start + min_seconds <= at <= leaf.end - min_seconds:
            halves = Window(leaf.start, at), Window(at, leaf.end)
        else:
            halves = split_window(Window(leaf.start, leaf.end), min_seconds=min_seconds)
        if halves is None:
            return ()
        # The halves of a sub-query's leaf are the same sub-query: they keep its suffix.
        suffix = parse_leaf_key(leaf.key).suffix
        children = [PlannedShard(w.key + suffix, w.start, w.end) for w in halves]
        return self._replace(leaf, children, why)

    def split_by_value(self, leaf: ShardRecord, why: str) -> tuple[str, ...]:
        """Cut a window of the whole query into one leaf per value of the study's IN list."""
        if self.value_split is None or parse_leaf_key(leaf.key).index is not None:
            return ()
        children = [
            PlannedShard(sub_key(leaf.key, i, value), leaf.start, leaf.end)
            for i, value in enumerate(self.value_split.values)
        ]
        return self._replace(leaf, children, why)

    def _replace(
        self, leaf: ShardRecord, children: list[PlannedShard], why: str
    ) -> tuple[str, ...]:
        for path in self.state.split(leaf.key, children):
            # The children fetch these records again; start-up would remove them anyway.
            self.staging.delete([path])
        forget_quarantine(self.study.output_path, leaf.key)
        self.stats.splits += 1
        log.info("shard_split", leaf=leaf.key, reason=why, children=[c.key for c in children])
        return tuple(c.key for c in children)

    def _failed(self, key: str, exc: ApiError) -> LeafOutcome:
        """A leaf whose request failed for good this time: split, retry later, or park."""
        state, policy = self.state, self.policy
        message = str(exc)
        leaf = state.shard(key)
        if isinstance(exc, TransientError):
            # The public API fails less on small windows: split one whose query the server keeps
            # failing (5xx), before it has delivered anything or again after delivering (some
            # date ranges fail for hours; refetching its few pages is cheaper than parking it).
            # Connection, DNS, TLS, timeout and token failures say nothing about the window.
            if (
                self.rest
                and isinstance(exc, ServerError)
                and (leaf.pages == 0 or leaf.attempts >= 1)
            ):
                children = self.split(leaf, f"failing: {exc.kind}", min_seconds=DAY)
                if children:
                    return LeafOutcome(children=children)
            state.record_error("window_failed", key, message)
            if leaf.attempts + 1 < policy.max_attempts:
                state.requeue_leaf(key)
                log.warning("shard_retry_later", leaf=key, kind=exc.kind, error=message)
                return LeafOutcome(retry_after=policy.retry_delay)
        state.park(key, exc.kind, message)
        self.stats.parked += 1
        log.error("shard_parked", leaf=key, kind=exc.kind, error=message)
        return LeafOutcome()


__all__ = ["LeafOutcome", "LeafPolicy", "LeafRunner"]
