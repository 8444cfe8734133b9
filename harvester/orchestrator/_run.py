"""One harvest run: the only place that knows plan, api, sink and state together.

A run is a task group: workers take leaves from a queue, fetch their pages, stage each page and
checkpoint it in one state transaction, split windows that come back saturated or keep failing,
and write a plan shard's files once all its leaves are done. Every step is idempotent against
the state store, so a run killed at any instant continues where it stopped.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from anyio.abc import TaskGroup

from harvester._exceptions import (
    AuthError,
    ConfigError,
    HarvesterError,
    QuotaExhausted,
    QuotaSpent,
)
from harvester._exit import EXIT_FAILURE, EXIT_OK, EXIT_QUOTA, EXIT_SIGNAL
from harvester._study_state import open_state
from harvester._version import __version__
from harvester.api import (
    Backend,
    RetryPolicy,
)
from harvester.config import Credentials, Study
from harvester.orchestrator._backends import credentials_refused, make_backend, reachable_session
from harvester.orchestrator._budget import DayBudget, DayOver, LeafQueue, Need
from harvester.orchestrator._cancel import cancel_tasks, cancellable
from harvester.orchestrator._enrich import EnrichmentRun, sweep_enrichments
from harvester.orchestrator._leaf import LeafOutcome, LeafPolicy, LeafRunner
from harvester.orchestrator._ledger import QuotaGate, QuotaLedger, RunStats
from harvester.orchestrator._publish import Publisher
from harvester.orchestrator._schedule import Scheduler
from harvester.orchestrator._settle import extend_study_plan, start_refreshes
from harvester.plan import plan_study
from harvester.sink import (
    MANIFEST,
    STAGING,
    cleanup_staging,
    cleanup_strays,
    layout,
)
from harvester.sink.store import DatasetStore, LocalStore, open_dataset
from harvester.state import (
    LeaseHeld,
    LeaseLost,
    StateStore,
    utc_day,
)

if TYPE_CHECKING:
    from harvester.progress import Watched

log = structlog.get_logger("harvester.run")

#: How often a leaf that failed with a transient error is tried again before it is parked.
MAX_LEAF_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class RunOptions:
    replan: bool = False
    retry_failed: bool = False
    cancel_on_exit: bool = False
    log_file: Path | None = None
    progress: bool = False
    #: Seconds before a failed leaf is tried again; None: 30 s, or the study's
    #: `retry_wait_max_s` when that is shorter (tests make it small).
    retry_delay: float | None = None
    #: The API layer's retry policy; None for the defaults.
    retry: RetryPolicy | None = None
    #: RQS poll policy override (tests and benchmarks with fast task lifecycles); left without
    #: a `rate`, it gets half the study's requests per second.
    poll: Any = None
    #: A real `pyrqs.rqs.RQSClient`-like object for source = "pyrqs".
    sdk_client: Any = None


def staging_dir(study: Study) -> Path:
    """Staged pages live beside the state file, outside the dataset readers scan; with the
    state in PostgreSQL, workers on other machines must reach them: they live in the dataset,
    under `_staging/`, which readers skip (docs/design.md)."""
    if study.state_url is not None:
        return study.output_path / STAGING
    return study.state_path.with_name(study.state_path.name + ".staging")


def staging_store(study: Study, dataset: DatasetStore) -> DatasetStore:
    """`staging_dir` as a store: under the dataset's `_staging/` prefix when workers share the
    study (in the bucket, for a dataset in an object store), else the local folder."""
    if study.state_url is not None:
        return dataset.child(STAGING)
    return LocalStore(staging_dir(study))


def check_output_is_ours(study: Study, state: StateStore, dataset: DatasetStore) -> None:
    """Refuse a non-empty folder (or prefix) that is not a harvester dataset: start-up removes
    files the state does not know, and a mistyped path must never cost a user their files."""
    if state.known_files() or dataset.exists(MANIFEST):
        return
    local = dataset.local
    if local is not None:
        if not local.is_dir() or not any(local.iterdir()):
            return
    elif not dataset.files():
        return
    what = "folder" if local is not None else "prefix"
    raise ConfigError(
        f"{study.config_path.name}: output.path: {dataset} is not empty and is not a harvester "
        f"dataset; choose an empty or new {what}"
    )


class Harvest:
    """Runs one study to completion (or to a clean stop)."""

    def __init__(
        self,
        study: Study,
        credentials: Credentials,
        options: RunOptions,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.study = study
        self.options = options
        self.clock = clock
        self.stats = RunStats(started=clock())
        self.layout = layout(study.fields, study.partition_by)
        #: Where the dataset is (a folder or an object-store prefix) and where pages are staged.
        self.dataset = open_dataset(study.dataset)
        self.staging = staging_store(study, self.dataset)
        self.credentials = credentials
        self._stop_code: int | None = None
        self._stop_reason = ""
        self.queue: LeafQueue | None = None
        self.budget: DayBudget | None = None
        self.schedule: Scheduler | None = None
        self.max_leaf_attempts = MAX_LEAF_ATTEMPTS
        self.retry_delay = (
            options.retry_delay
            if options.retry_delay is not None
            else min(30.0, study.api.retry_wait_max_s)
        )
        self.state: StateStore = open_state(study)
        #: Workers sharing a study name their staged pages apart (see `write_segment`).
        self.segment_tag = uuid.uuid4().hex[:12] if study.state_url is not None else ""
        self.publisher = Publisher(
            study, self.state, self.layout, self.dataset, self.staging, self.stats, clock=clock
        )
        #: Plan shards harvested before and open again: they wait behind new windows.
        self.refreshing: set[str] = set()

    # -- start-up -------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Everything before the first request: lock, plan, recover from any earlier crash."""
        study, state = self.study, self.state
        # Lock first: a --replan must never reset the state under a live run.
        state.lock()
        state.open_study(
            study.name, study.plan_fingerprint(), __version__, replan=self.options.replan
        )
        self.dataset.prepare()  # a folder created; a bucket that answers
        check_output_is_ours(study, state, self.dataset)
        plan = plan_study(study)
        # Segments a completed short window had staged go with the sweep below.
        added, _ = extend_study_plan(state, plan)
        if added:
            log.info("study_planned", study=study.name, shards=len(plan), added=added)
        state.reset_running()  # when others work on the study too: only leases that ran out
        if self.options.retry_failed:
            log.info("parked_retried", shards=state.retry_parked())
        if state.alone:
            # With other workers at work, their unrecorded files are work in progress, not a
            # crash's leftovers: only a worker alone with the study sweeps.
            self.publisher.recover_compactions()
            removed = cleanup_strays(self.dataset, state.known_files())
            removed += cleanup_staging(self.staging, state.known_segments())
            if study.enrichments:
                removed += sweep_enrichments(study, state)
            if removed:
                log.warning("stray_files_removed", count=len(removed), files=removed[:20])
        # After the sweep: a refresh keeps the window's files known, and readable, meanwhile.
        self.refreshing = start_refreshes(study, state, self.clock())
        self.stats.refreshing = len(self.refreshing)
        self.publisher.harvested_before = {h.plan_key for h in state.window_harvests()}
        self.stats.plan_total = len(plan)
        # A relative study's windows are the state's (the plan only adds to them).
        self.publisher.write_manifest(None if study.relative else plan.shards)
        state.open_to_others()

    # -- the run --------------------------------------------------------------------------------

    async def run(self) -> int:
        self.prepare()
        for plan_key in self.publisher.ready_plan_shards():
            await self.publisher.finalize(plan_key)
        stats = self.stats
        stats.plan_committed = self.state.status().committed_plan_shards
        ledger = QuotaLedger(
            self.state,
            daily_requests=self.study.quota.daily_requests,
            daily_records=self.study.quota.daily_records,
            clock=self.clock,
            stats=stats,
        )
        gate = QuotaGate(ledger, self.clock, stats)
        self.budget = DayBudget(lambda: self._left_today(ledger))
        self.schedule = Scheduler(self.study, self.state, self.budget, self.clock)
        async with reachable_session(
            self.study, self.credentials, retry=self.options.retry, hooks=ledger
        ) as session:
            backend = make_backend(
                self.study, session, poll=self.options.poll, sdk=self.options.sdk_client
            )
            runner = LeafRunner(
                self.study,
                backend,
                gate,
                state=self.state,
                staging=self.staging,
                layout=self.layout,
                stats=stats,
                policy=LeafPolicy(
                    max_attempts=self.max_leaf_attempts,
                    retry_delay=self.retry_delay,
                    on_exhausted=self.study.quota.on_exhausted,
                    segment_tag=self.segment_tag,
                ),
                budget=self.budget,
                clock=self.clock,
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch_signals, tg)
                if not self.state.alone:
                    tg.start_soon(self._heartbeat)
                if self.options.progress:
                    from harvester.progress import show_progress

                    tg.start_soon(show_progress, self.watched())
                await self._drive(runner, tg)
                tg.cancel_scope.cancel()  # the watchers
            if self._stop_code is not None and self.options.cancel_on_exit:
                with anyio.CancelScope(shield=True), anyio.move_on_after(30):
                    await self._cancel_in_flight(runner.backend)
        if self._stop_code is None:
            await self.publisher.compact()
        self.publisher.write_manifest()
        self._tidy_staging()
        if self._stop_code is None and self.study.enrichments:
            # After the videos: comments, users, ... about them (orchestrator/_enrich.py).
            enrichments = EnrichmentRun(
                self.study,
                self.state,
                self.credentials,
                ledger,
                run_stats=stats,
                retry=self.options.retry,
                retry_delay=self.retry_delay,
                clock=self.clock,
                poll=self.options.poll,
                sdk=self.options.sdk_client,
            )
            code = await enrichments.run()
            if code is not None:
                self._stop_code, self._stop_reason = code, "enrichment"
        return self._finish()

    def watched(self) -> Watched:
        """What the progress display reads of this run."""
        from harvester.progress import Watched  # rich loads only when progress is shown

        study = self.study
        return Watched(
            f"harvesting {study.name}", self.stats, self.clock, self.state.usage, study.quota
        )

    def _left_today(self, ledger: QuotaLedger) -> Need:
        quota, day = self.study.quota, ledger.today()
        used = self.state.usage(day)  # the pool's day, when the study shares one
        if used.exhausted:
            return Need(0, 0)
        left = Need(quota.daily_requests - used.requests, quota.daily_records - used.records)
        if quota.share is None:
            return left
        mine = [u for u in self.state.usage_by_worker(day) if u.study == self.study.name]
        own = Need(
            quota.study_requests - sum(u.requests for u in mine),
            quota.study_records - sum(u.records for u in mine),
        )
        return Need(min(left.requests, own.requests), min(left.records, own.records))

    def _tidy_staging(self) -> None:
        """The last worker out removes what is left under the dataset's `_staging/`: pages of
        leaves that split or died after staging, never checkpointed. Only a worker alone with
        the study may (another's unrecorded pages are work in progress)."""
        if self.study.state_url is None or not self.state.take_alone():
            return
        removed = cleanup_staging(self.staging, self.state.known_segments())
        if removed:
            log.info("staging_tidied", count=len(removed), files=removed[:20])

    def _finish(self) -> int:
        summary = self.state.status()
        parked = summary.shards.get("parked", 0)
        begun = [
            s for s in self.state.shards() if s.status in ("pending", "running") and s.pages > 0
        ]
        log.info(
            "run_finished",
            stop=self._stop_reason or None,
            requests=self.stats.requests,
            records=self.stats.records,
            dropped_by_exact_filter=self.stats.filtered,
            committed=summary.committed_plan_shards,
            committed_this_run=self.stats.plan_committed_this_run,
            plan_shards=summary.plan_shards,
            parked=parked,
            in_flight=len(begun),
            in_flight_pages=sum(s.pages for s in begun),
        )
        if self._stop_code is not None:
            return self._stop_code
        if parked:
            raise HarvesterError(
                f"{parked} window(s) were parked after repeated failures (see `harvester status`); "
                "run again with --retry-failed to take them up"
            )
        return EXIT_OK

    def stop(self, code: int, reason: str, tg: TaskGroup) -> None:
        if self._stop_code is None:
            self._stop_code, self._stop_reason = code, reason
        tg.cancel_scope.cancel()

    async def _watch_signals(self, tg: TaskGroup) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.warning("run_interrupted", signal=signal.Signals(signum).name)
                self.stop(EXIT_SIGNAL[signal.Signals(signum)], "signal", tg)
                return

    # -- scheduling ------------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Renew this worker's leases while it lives (a checkpoint renews one too)."""
        while True:
            await anyio.sleep(self.study.lease_s / 4)
            await anyio.to_thread.run_sync(self.state.heartbeat)

    async def _drive(self, runner: LeafRunner, tg: TaskGroup) -> None:
        leaves = [s.key for s in self.state.shards(status="pending")]
        while True:
            await self._drive_keys(runner, tg, leaves)
            if self.state.alone or self._stop_code is not None:
                return
            # Other workers share the study: take up what they leave (leaves they split, leaves
            # of a worker that died), and stay until no leaf is running anywhere.
            leaves = await self._claim_more()
            if not leaves:
                return

    async def _claim_more(self) -> list[str]:
        batch = max(1, self.study.api.max_concurrency)
        while self._stop_code is None:
            claimed: list[str] = []
            while len(claimed) < batch and (leaf := self.state.claim_leaf()) is not None:
                claimed.append(leaf.key)
            if claimed:
                log.info("leaves_claimed", leaves=claimed)
                return claimed
            if not self.state.status().shards.get("running"):
                return []
            await anyio.sleep(min(5.0, self.study.lease_s / 4))
        return []

    async def _drive_keys(self, runner: LeafRunner, tg: TaskGroup, leaves: list[str]) -> None:
        pending = [self.state.shard(key) for key in leaves]
        if not pending:
            return
        assert self.schedule is not None
        keys = self.schedule.order(
            pending, sampling=runner.sample_limit is not None, refreshing=self.refreshing
        )
        self.queue = LeafQueue(keys)
        concurrency = max(1, self.study.api.max_concurrency)
        if self.study.source != "research-api":
            concurrency *= 2  # task slots bound the tasks; the extra leaves page and write
        async with anyio.create_task_group() as workers:
            for _ in range(concurrency):
                workers.start_soon(self._worker, runner, runner.gate, tg)

    async def _worker(self, runner: LeafRunner, gate: QuotaGate, tg: TaskGroup) -> None:
        queue, budget, schedule = self.queue, self.budget, self.schedule
        assert queue is not None and budget is not None and schedule is not None
        while True:
            try:
                key = await queue.take(schedule.chooser)
            except DayOver:
                if not await self._day_over(gate, tg):
                    return
                continue
            if key is None:
                return
            try:
                outcome = schedule.split_if_too_big(runner, key)
                cut = outcome is not None
                if outcome is None:
                    outcome = await self._run_one(runner, key, tg)
            finally:
                budget.release(key)
            if outcome.retry_after is not None:
                schedule.note_progress(key)
                tg.start_soon(self._requeue_later, key, outcome.retry_after)
                continue
            if outcome.children:
                queue.add(outcome.children, front=cut)
            elif outcome.done:
                schedule.done(key)
                await self._leaf_done(key)
            elif self._stop_code is None and self.state.shard(key).status == "pending":
                # Handed back (a quota wait ended, the day is over): it waits its turn again.
                schedule.note_progress(key)
                queue.back(key)
                continue
            queue.finished()

    async def _day_over(self, gate: QuotaGate, tg: TaskGroup) -> bool:
        """Nothing left fits today: stop (exit 75) or wait for 00:00 UTC. True to go on."""
        assert self.queue is not None and self.budget is not None
        free = self.budget.free()
        reason = (
            f"{free.requests:,} requests left today cannot finish any of the "
            f"{len(self.queue):,} windows waiting"
        )
        exc = QuotaSpent(reason)
        if self.study.quota.on_exhausted == "exit":
            log.warning("day_budget_spent", left=free.requests, waiting=len(self.queue))
            self.stop(EXIT_QUOTA, "quota", tg)
            self.queue.close()
            return False
        # The day the budget ran out, read now: the wait is for that day's next 00:00.
        await gate.wait(exc, utc_day(self.clock()))
        self.queue.wake()
        return True

    async def _run_one(self, runner: LeafRunner, key: str, tg: TaskGroup) -> LeafOutcome:
        try:
            return await runner.run(key)
        except (LeaseHeld, LeaseLost) as exc:
            # Another worker has the leaf (or took it over from us): it is theirs to finish.
            log.info("leaf_left_to_another_worker", leaf=key, reason=str(exc))
            return LeafOutcome()
        except QuotaExhausted as exc:
            # on_exhausted = "exit": leave cleanly with 75; the next run continues.
            log.warning("quota_exhausted", leaf=key, reason=str(exc))
            self.stop(EXIT_QUOTA, "quota", tg)
            return LeafOutcome()
        except AuthError as exc:
            self.stop(EXIT_FAILURE, f"the API refused the credentials: {exc}", tg)
            raise credentials_refused(self.study, exc) from None

    async def _requeue_later(self, key: str, delay: float) -> None:
        await anyio.sleep(delay)
        if self.queue is not None:
            self.queue.back(key)

    async def _leaf_done(self, key: str) -> None:
        plan_key = self.state.shard(key).plan_key
        if self.state.plan_ready(plan_key):
            await self.publisher.finalize(plan_key)

    async def _cancel_in_flight(self, backend: Backend[Any]) -> None:
        leaves = self.state.shards()
        if not self.state.alone:
            # Only this worker's tasks: other workers sharing the study go on with theirs.
            mine = set(self.state.heartbeat())
            leaves = [s for s in leaves if s.key in mine]
        await cancel_tasks(backend, self.state, cancellable(leaves))


__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_QUOTA",
    "Harvest",
    "RunOptions",
    "check_output_is_ours",
    "staging_dir",
]
