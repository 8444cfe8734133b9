"""The enrichment run: after the videos, fetch what each `[[enrich]]` block asks about them.

Targets are read from the harvested video dataset with DuckDB (the block's `where`, deduplicated)
and added to the enrichment state; targets already known keep their progress, so a scheduled
study only fetches what is new. Each target is a leaf: its pages are staged and checkpointed
with its cursor in one transaction, so a run killed at any instant resumes every target where it
stopped, without loss or duplicates. A target the API refuses (private, deleted, under 18) gets
that verdict as its outcome and the run goes on. Done targets are published in batches as files
of the kind's own dataset beside the videos. Requests go through the run's quota ledgers: the
video query's pool, or the followers/following lists' own.
"""

from __future__ import annotations

import functools
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from harvester._exceptions import (
    ApiError,
    AuthError,
    HarvesterError,
    QuotaExhausted,
)
from harvester._exit import EXIT_QUOTA, EXIT_SIGNAL
from harvester._version import __version__
from harvester.api import (
    ApiSession,
    EnrichClient,
    PollPolicy,
    RetryPolicy,
    RqsEnrichClient,
    TargetUnavailable,
    TaskRunner,
)
from harvester.config import Credentials, Enrichment, Study
from harvester.kinds import FOLLOWERS_DAILY_RECORDS, FOLLOWERS_DAILY_REQUESTS, KINDS, Kind
from harvester.orchestrator._backends import api_session, make_backend
from harvester.orchestrator._ledger import QuotaLedger, RunStats
from harvester.orchestrator._targets import (
    enrich_staging,
    enrich_stagings,
    open_enrich_state,
    read_targets,
)
from harvester.plan.enrich import VCE_BATCH_TARGETS
from harvester.sink import cleanup_staging, cleanup_strays, open_dataset, write_manifest
from harvester.sink.enrich import (
    normalise_targets,
    publish_batch,
    rewrite_without,
    segment_keys,
    stage_page,
)
from harvester.sink.staging import read_segments
from harvester.sink.store import DatasetStore
from harvester.state import LeaseHeld, LeaseLost, StateStore
from harvester.state.enrich import EnrichState, TargetRow

__all__ = [
    "EnrichStats",
    "EnrichmentRun",
    "enrich_staging",
    "open_enrich_state",
    "read_targets",
    "sweep_enrichments",
]

log = structlog.get_logger("harvester.enrich")

DAY = 86_400
#: Attempts of a target failing with transient errors before it is parked as failed.
MAX_TARGET_ATTEMPTS = 5
#: Done targets gathered before their rows are written as one file per partition.
PUBLISH_EVERY = 500
#: Records an execution-stage category task may return: the stage's most, so that only a
#: batch with more rows than that is split.
BATCH_LIMIT = 100_000


@dataclass(slots=True)
class EnrichStats:
    """This run's counts per kind: requests sent, pages, rows, targets by outcome, errors."""

    requests: Counter[str] = field(default_factory=Counter)
    pages: Counter[str] = field(default_factory=Counter)
    rows: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)


class _PoolHooks:
    """`RequestHooks` that charge each endpoint to its own pool: the followers/following lists
    to their own daily ledger, everything else to the run's (shared with the videos). Both
    date a call, and a refusal of it, by the day it was sent (`QuotaLedger.call_day`)."""

    def __init__(self, research: QuotaLedger, es: EnrichState, stats: EnrichStats) -> None:
        self.research = research
        self.followers = research.for_pool(
            es.quota,
            daily_requests=FOLLOWERS_DAILY_REQUESTS,
            daily_records=FOLLOWERS_DAILY_RECORDS,
            what="followers/following daily quota",
        )
        self.gates = {"research": research.gate(), "followers": self.followers.gate()}
        self.stats = stats
        self.pool_of = {k.endpoint: k.pool for k in KINDS.values()}
        self.kind_of = {k.endpoint: k.name for k in KINDS.values()}
        #: The kind whose VCE tasks run now (a pyrqs study): their verbs count for it.
        self.current: str | None = None

    def _ledger(self, endpoint: str) -> QuotaLedger:
        return self.followers if self.pool_of.get(endpoint) == "followers" else self.research

    async def reserve(self, endpoint: str) -> None:
        await self._ledger(endpoint).reserve(endpoint)
        self.stats.requests[self.kind_of.get(endpoint, self.current or endpoint)] += 1

    def settle(self, endpoint: str, *, ok: bool, records: int) -> None:
        self._ledger(endpoint).settle(endpoint, ok=ok, records=records)

    def on_retry(self, kind: str, attempt: int, delay: float) -> None:
        self.research.on_retry(kind, attempt, delay)

    def on_error(self, kind: str) -> None:
        self.research.on_error(kind)


class EnrichmentRun:
    """Every `[[enrich]]` block of a study, after its video harvest, with what the run hands it
    (never reaching back into the run that made it).

    `research_hooks` is the run's quota ledger, shared with the videos; `run_stats` the run's
    counters (the enrichments' records add to the videos'); `retry` overrides the study's retry
    policy; `retry_delay` is the wait before a target that failed is tried again."""

    def __init__(
        self,
        study: Study,
        state: StateStore,
        credentials: Credentials,
        research_hooks: QuotaLedger,
        *,
        run_stats: RunStats,
        retry: RetryPolicy | None = None,
        retry_delay: float = 30.0,
        clock: Callable[[], float] = time.time,
        poll: PollPolicy | None = None,
        sdk: Any = None,
    ) -> None:
        self.study = study
        self.state = state
        self.credentials = credentials
        self.run_stats = run_stats
        self.retry = retry
        self.retry_delay = retry_delay
        self.clock = clock
        self.es = open_enrich_state(study, state)
        #: Each kind's staging area (`enrich_staging`).
        self.staging = enrich_stagings(study)
        #: Each kind's dataset: a folder, or a prefix beside the videos' in the object store.
        self.datasets = {e.kind: open_dataset(e.dataset) for e in study.enrichments}
        self.stats = EnrichStats()
        self.hooks = _PoolHooks(research_hooks, self.es, self.stats)
        self.stop_code: int | None = None
        self._tg: TaskGroup | None = None
        #: A pyrqs study's enrichments are VCE category tasks (`_run_batches`): the SDK's
        #: backend, with `poll` and `sdk` standing in as for the video harvest.
        self.poll = poll
        self.sdk = sdk
        self.runner: TaskRunner | None = None

    # -- start-up -------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Targets a dead run left running go back to pending (when other workers share the
        study: those whose lease ran out), and the video dataset's new targets are added. What
        a crash left on disk was swept at the run's start (`sweep_enrichments`)."""
        es = self.es
        es.reset_running()
        for e in self.study.enrichments:
            self.datasets[e.kind].prepare()
            targets = read_targets(self.study, e)
            wait = self.study.settle_days * DAY
            settles = {t: float(ct + wait) for t, ct in targets.items() if ct is not None and wait}
            added = es.add_targets(e.kind, targets, settles)
            refreshed, dropped = es.reopen_unsettled(e.kind, self.clock()) if wait else ([], [])
            self.staging[e.kind].delete(dropped)
            log.info("enrich_targets", kind=e.kind, added=added, refreshed=len(refreshed))

    # -- the run --------------------------------------------------------------------------------

    async def run(self) -> int | None:
        """Run every block; returns a stop code (75, 130, 143) or None when all ran to their
        end. The enrichment state is closed after."""
        try:
            return await self._run()
        finally:
            self.es.close()

    async def _run(self) -> int | None:
        self.prepare()
        for e in self.study.enrichments:
            await self.publish_all(e)
        async with (
            api_session(
                self.study, self.credentials, retry=self.retry, hooks=self.hooks
            ) as session,
            anyio.create_task_group() as tg,
        ):
            self._tg = tg
            if self.study.source == "pyrqs":
                backend = make_backend(self.study, session, poll=self.poll, sdk=self.sdk)
                assert isinstance(backend, TaskRunner)
                self.runner = backend
            tg.start_soon(self._watch_signals)
            if not self.state.alone:
                tg.start_soon(self._heartbeat)
            for e in self.study.enrichments:
                if self.stop_code is not None:
                    break
                await self._run_kind(session, e)
                if self.stop_code is None:
                    await self.publish_all(e)
            tg.cancel_scope.cancel()
        for e in self.study.enrichments:
            self.write_manifest(e)
        self._tidy_staging()
        self._log_summary()
        return self.stop_code

    def _tidy_staging(self) -> None:
        """The last worker out removes what is left in the shared staging areas: pages of
        targets a worker staged and never checkpointed (it died, or lost the target's lease).
        Only a worker alone with the study may (another's unrecorded pages are in progress)."""
        if self.study.state_url is None or not self.state.take_alone():
            return
        removed = _sweep_staging(self.staging.values(), self.es.known_segments())
        if removed:
            log.info("staging_tidied", count=len(removed), files=removed[:20])

    def _stop(self, code: int) -> None:
        if self.stop_code is None:
            self.stop_code = code
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.warning("run_interrupted", signal=signal.Signals(signum).name)
                self._stop(EXIT_SIGNAL[signal.Signals(signum)])
                return

    async def _heartbeat(self) -> None:
        """Renew this worker's leases of targets while it lives (a checkpoint renews one too)."""
        while True:
            await anyio.sleep(self.study.lease_s / 4)
            await anyio.to_thread.run_sync(self.es.heartbeat)

    async def _run_kind(self, session: ApiSession, e: Enrichment) -> None:
        """Every pending target of the block; with other workers on the study, then what they
        leave (targets of a worker that died, replies they added) until none runs anywhere."""
        kind = KINDS[e.kind]
        if self.runner is not None:
            self.hooks.current = kind.name
            await self._run_batches(self.runner, kind, e, self.es.targets(e.kind, "pending"))
            return
        client = EnrichClient(session, kind)
        targets = [row.target for row in self.es.targets(e.kind, "pending")]
        while True:
            if targets:
                await self._run_targets(client, kind, e, targets)
            if self.state.alone or self.stop_code is not None:
                return
            targets = await self._claim_more(kind)
            if not targets:
                return

    async def _claim_more(self, kind: Kind) -> list[str]:
        batch = max(1, self.study.api.max_concurrency)
        while self.stop_code is None:
            claimed: list[str] = []
            while len(claimed) < batch and (row := self.es.claim(kind.name)) is not None:
                claimed.append(row.target)
            if claimed:
                log.info("targets_claimed", kind=kind.name, targets=claimed)
                return claimed
            if not self.es.running_elsewhere(kind.name):
                return []
            await anyio.sleep(min(5.0, self.study.lease_s / 4))
        return []

    async def _run_targets(
        self, client: EnrichClient, kind: Kind, e: Enrichment, targets: list[str]
    ) -> None:
        send, receive = anyio.create_memory_object_stream[str](float("inf"))
        for target in targets:
            send.send_nowait(target)
        state = {"outstanding": len(targets)}

        async def worker() -> None:
            async for target in receive:
                try:
                    children = await self._target(client, kind, e, target)
                    for child in children:
                        state["outstanding"] += 1
                        send.send_nowait(child)
                    if len(self.es.unpublished(e.kind)) >= PUBLISH_EVERY:
                        self.publish(e)
                finally:
                    state["outstanding"] -= 1
                    if state["outstanding"] <= 0:
                        send.close()

        async with anyio.create_task_group() as workers:
            for _ in range(max(1, self.study.api.max_concurrency)):
                workers.start_soon(worker)

    # -- a pyrqs study: VCE category tasks, many targets each ----------------------------------

    async def _run_batches(
        self, runner: TaskRunner, kind: Kind, e: Enrichment, rows: list[TargetRow]
    ) -> None:
        """Every pending target in batches of VCE_BATCH_TARGETS, one VCE task each (more when a
        saturated one is split). Targets whose task was created before a restart keep their
        batch and its task (their cursor holds its id): it is polled, not created again."""
        noted: dict[int, list[str]] = {}
        fresh: list[str] = []
        for row in rows:
            (fresh if row.cursor is None else noted.setdefault(row.cursor, [])).append(row.target)
        batches: list[tuple[list[str], int | None]] = [(ts, tid) for tid, ts in noted.items()]
        batches += [
            (fresh[i : i + VCE_BATCH_TARGETS], None)
            for i in range(0, len(fresh), VCE_BATCH_TARGETS)
        ]
        if runner.stage == "test":
            # The test stage's rule for videos: every task the same share of the day's records,
            # so the first batches cannot take the whole day's sample.
            limit = max(
                1, min(runner.limit, self.study.quota.daily_records // max(1, len(batches)))
            )
        else:
            limit = BATCH_LIMIT
        client = RqsEnrichClient(
            runner, kind, replies=e.replies, max_per_target=e.max_per_target, limit=limit
        )
        send, receive = anyio.create_memory_object_stream[tuple[list[str], int | None]](
            float("inf")
        )
        for batch in batches:
            send.send_nowait(batch)
        send.close()

        async def worker() -> None:
            async for targets, task_id in receive:
                await self._guarded(
                    kind,
                    targets,
                    functools.partial(self._batch_attempt, client, kind, task_id),
                )
                if len(self.es.unpublished(e.kind)) >= PUBLISH_EVERY:
                    self.publish(e)

        async with anyio.create_task_group() as workers:
            for _ in range(max(1, min(len(batches), self.study.api.max_concurrency))):
                workers.start_soon(worker)

    async def _batch_attempt(
        self,
        client: RqsEnrichClient,
        kind: Kind,
        task_id: int | None,
        targets: list[str],
        tries: int,
    ) -> list[str]:
        # A retry creates a new task: the noted one failed (or its analysis did).
        return await self._fetch_batch(client, kind, targets, task_id if tries == 0 else None)

    async def _fetch_batch(
        self, client: RqsEnrichClient, kind: Kind, targets: list[str], task_id: int | None
    ) -> list[str]:
        """One batch's tasks: each finished task's rows staged per target, then its targets
        done (`ok` or `empty`) in one transaction, so a kill loses or repeats nothing."""
        es = self.es
        values: dict[Any, str] = {}
        for target in targets:
            try:
                row = es.start(kind.name, target)
            except LeaseHeld:
                continue  # another worker's now
            values[self._target_value(kind, row)] = target
        if not values:
            return []

        def noted(batch: tuple[Any, ...], created: int) -> None:
            es.note_task(kind.name, [values[v] for v in batch], created)
            log.info("task_noted", kind=kind.name, task_id=created, targets=len(batch))

        async for done in client.batches(list(values), task_id=task_id, on_task=noted):
            results: list[tuple[str, str | None, int]] = []
            for value, records in done.records.items():
                target = values[value]
                segment = None
                if records:
                    batch = normalise_targets(
                        kind,
                        records,
                        target=value,
                        shard=f"{kind.name}:{target}",
                        source=self.study.source,
                        retrieved_at=done.fetched_at,
                    )
                    segment = stage_page(self.staging[kind.name], kind.name, target, 0, batch)
                results.append((target, segment, len(records)))
            es.finish_batch(kind.name, results, fetched_at=self.clock())
            rows = sum(n for _, _, n in results)
            self.stats.pages[kind.name] += 1
            self.stats.rows[kind.name] += rows
            self.run_stats.records += rows
            for _, _, n in results:
                self.stats.outcomes[(kind.name, "ok" if n else "empty")] += 1
            log.info(
                "task_fetched",
                kind=kind.name,
                task_id=done.task_id,
                targets=len(results),
                rows=rows,
                saturated=done.saturated,
            )
        return []

    def _target_value(self, kind: Kind, row: TargetRow) -> Any:
        raw = row.parent if row.parent is not None else row.target
        return int(raw) if kind.target_type == "int64" else raw

    async def _target(
        self, client: EnrichClient, kind: Kind, e: Enrichment, target: str
    ) -> list[str]:
        """Fetch one target to its end (or its verdict); returns reply targets it added."""

        async def attempt(_targets: list[str], _tries: int) -> list[str]:
            return await self._fetch(client, kind, e, target)

        return await self._guarded(kind, [target], attempt)

    async def _guarded(
        self,
        kind: Kind,
        targets: list[str],
        attempt: Callable[[list[str], int], Awaitable[list[str]]],
    ) -> list[str]:
        """`attempt(targets, tries)` until it ends: one target's fetch, or a batch's VCE task.
        A refused target gets its verdict; a spent quota waits for 00:00 UTC (or stops the
        run); other failures are retried later, a target parked as failed after
        MAX_TARGET_ATTEMPTS. Returns what the attempt returns (reply targets it added)."""
        tries = 0
        while True:
            try:
                return await attempt(targets, tries)
            except (LeaseHeld, LeaseLost) as exc:
                # Another worker runs it (or took it over from this one, presumed dead).
                log.info("target_elsewhere", kind=kind.name, targets=targets, reason=str(exc))
                return []
            except TargetUnavailable as exc:
                (target,) = targets  # only an endpoint's answer about one target says this
                dropped = self.es.refuse(
                    kind.name, target, exc.kind, exc.message, fetched_at=self.clock()
                )
                self.staging[kind.name].delete(dropped)
                self.stats.outcomes[(kind.name, exc.kind)] += 1
                log.info("target_unavailable", kind=kind.name, target=target, verdict=exc.kind)
                return []
            except QuotaExhausted as exc:
                for target in self._mine(kind, targets):
                    self.es.fail(kind.name, target, exc.kind, str(exc), park=False)
                # The pool's gate dates the refusal by the day its call was sent; a VCE task
                # counts in the RQS's (research) pool whatever its category.
                gate = self.hooks.gates["research" if self.runner is not None else kind.pool]
                if self.study.quota.on_exhausted == "exit":
                    gate.record(exc)
                    log.warning("quota_exhausted", kind=kind.name, reason=str(exc))
                    self._stop(EXIT_QUOTA)
                    return []
                await gate.wait(exc)
            except AuthError as exc:
                for target in self._mine(kind, targets):
                    self.es.fail(kind.name, target, exc.kind, str(exc), park=False)
                raise HarvesterError(
                    f"the API refused the credentials ({exc}); check "
                    f"{self.study.api.client_key_env} and {self.study.api.client_secret_env}"
                ) from None
            except ApiError as exc:
                self.stats.errors[(kind.name, exc.kind)] += 1
                again = []
                for target in self._mine(kind, targets):
                    park = self.es.target(kind.name, target).attempts + 1 >= MAX_TARGET_ATTEMPTS
                    self.es.fail(kind.name, target, exc.kind, str(exc), park=park)
                    if park:
                        self.stats.outcomes[(kind.name, "failed")] += 1
                        log.error("target_parked", kind=kind.name, target=target, kind_=exc.kind)
                    else:
                        again.append(target)
                if not again:
                    return []
                targets = again
                log.warning("target_retry_later", kind=kind.name, targets=targets, error=exc.kind)
                await anyio.sleep(self.retry_delay)
            tries += 1

    def _mine(self, kind: Kind, targets: list[str]) -> list[str]:
        """Those of `targets` this worker still runs (a batch may have finished some)."""
        if len(targets) == 1:
            return targets
        return [t for t in targets if self.es.target(kind.name, t).status == "running"]

    async def _fetch(
        self, client: EnrichClient, kind: Kind, e: Enrichment, target: str
    ) -> list[str]:
        es = self.es
        row = es.start(kind.name, target)
        if kind.flat and row.pages:
            # A one-page kind (user info) whose page is already checkpointed was killed before
            # it was marked done: the page is staged, and with no record key to tell repeats
            # apart, fetching it again would stage the same row twice and spend a request.
            return self._finish(kind, e, target)
        staged = [p for p, _, _ in es.segments(kind.name, target)]
        seen = segment_keys(self.staging[kind.name], staged, kind) if staged else set()
        value = self._target_value(kind, row)
        limit = None if e.max_per_target is None else max(0, e.max_per_target - row.rows)
        seq = row.pages
        async for page in client.pages(
            value, cursor=row.cursor, comment_id=row.comment_id, seen=seen, limit=limit
        ):
            segment = None
            rows = len(page.records)
            if rows:
                batch = normalise_targets(
                    kind,
                    page.records,
                    target=value,
                    shard=f"{kind.name}:{target}",
                    source="research-api",
                    retrieved_at=page.fetched_at,
                )
                segment = stage_page(self.staging[kind.name], kind.name, target, seq, batch)
            es.checkpoint(
                kind.name, target, segment=segment, seq=seq, rows=rows, cursor=page.cursor
            )
            seq += 1
            self.stats.pages[kind.name] += 1
            self.stats.rows[kind.name] += rows
            self.run_stats.records += rows
            log.info(
                "page_fetched",
                kind=kind.name,
                target=target,
                rows=rows,
                received=page.raw_count,
                cursor=page.cursor,
                has_more=page.has_more,
            )
        return self._finish(kind, e, target)

    def _finish(self, kind: Kind, e: Enrichment, target: str) -> list[str]:
        """Mark a fetched target done; returns the reply targets it added."""
        row = self.es.target(kind.name, target)
        replies = self._replies(kind, e, row)
        self.es.finish(kind.name, target, replies, fetched_at=self.clock())
        self.stats.outcomes[(kind.name, "ok")] += 1
        return [key for key, _ in replies]

    def _replies(self, kind: Kind, e: Enrichment, row: TargetRow) -> list[tuple[str, int]]:
        """(target key, comment id) of the staged comments with replies, when asked for."""
        if kind.name != "comments" or not e.replies or row.comment_id is not None:
            return []
        paths = [p for p, _, _ in self.es.segments(kind.name, row.target)]
        out = []
        for batch in read_segments(self.staging[kind.name], paths, ["id", "reply_count"]):
            for cid, n in zip(
                batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True
            ):
                if cid is not None and n:
                    out.append((f"{row.target}/{cid}", int(cid)))
        return out

    # -- publishing -----------------------------------------------------------------------------

    async def publish_all(self, e: Enrichment) -> None:
        """Publish every done target of the block, waiting while another worker publishes."""
        while not self.publish(e):  # noqa: ASYNC110 - the lock is another process's to free
            await anyio.sleep(0.5)

    def publish(self, e: Enrichment) -> bool:
        """Write the rows of done, unpublished targets into the kind's dataset; False (nothing
        done) while another worker sharing the study publishes the kind."""
        with self.state.exclusive(f"publish:{e.kind}") as mine:
            if mine:
                self._publish(e)
            return mine

    def _publish(self, e: Enrichment) -> None:
        es, kind = self.es, KINDS[e.kind]
        targets = es.unpublished(e.kind)
        stale = es.stale(e.kind)
        if not targets and not stale:
            return
        wanted = set(targets)
        segments = [p for p, t, _ in es.segments(e.kind) if t in wanted]
        dataset = self.datasets[e.kind]
        files = publish_batch(self.staging[e.kind], dataset, kind, segments)
        # Refreshed targets: the files holding their earlier rows are rewritten without them.
        known = [p for p, _ in es.files(e.kind)]
        replaced, rewritten = rewrite_without(dataset, kind, known, stale)
        # The files and the targets they hold are recorded in one transaction: a crash before
        # it leaves files the next start-up removes, and targets that publish again.
        done = es.publish(e.kind, files + rewritten, targets, replaced=replaced, refreshed=stale)
        self.staging[e.kind].delete(done)
        for rel in replaced:
            dataset.delete([rel])
        if not files and not replaced:
            return
        log.info(
            "file_committed",
            kind=e.kind,
            files=[p for p, _ in files + rewritten],
            rows=sum(n for _, n in files),
            targets=len(targets),
            replaced=replaced,
            refreshed=len(stale),
        )

    def write_manifest(self, e: Enrichment) -> None:
        s = self.es.summary(e.kind)
        write_manifest(
            self.datasets[e.kind],
            {
                "kind": e.kind,
                "study": self.study.name,
                "videos": self.study.dataset,
                "where": e.where,
                "max_per_target": e.max_per_target,
                "replies": e.replies,
                "key": KINDS[e.kind].target,
                "targets": s.targets,
                "outcomes": s.outcomes,
                "rows": sum(n for _, n in self.es.files(e.kind)),
                "files": s.files,
                "harvester_version": __version__,
                "updated_at": datetime.now(UTC).isoformat(),
            },
        )

    def _log_summary(self) -> None:
        for e in self.study.enrichments:
            s = self.es.summary(e.kind)
            log.info(
                "enrich_finished",
                kind=e.kind,
                targets=s.targets,
                outcomes=s.outcomes,
                rows=s.rows,
                requests=self.stats.requests[e.kind],
            )


def sweep_enrichments(study: Study, state: StateStore) -> list[str]:
    """At a run's start, with no other worker on the study: every running target is a dead
    run's (pending again, from its checkpoint); remove the staged pages and dataset files of
    the study's enrichments that their state does not know (a crash's)."""
    if not study.enrichments:
        return []
    es = open_enrich_state(study, state)
    es.reset_running()
    removed = _sweep_staging(enrich_stagings(study).values(), es.known_segments())
    for e in study.enrichments:
        removed += cleanup_strays(open_dataset(e.dataset), {p for p, _ in es.files(e.kind)})
    return removed


def _sweep_staging(stagings: Iterable[DatasetStore], known: set[str]) -> list[str]:
    """Remove what the state does not know from each distinct staging area (the blocks of a
    folder share one; the state's segment names are unique across kinds)."""
    removed: list[str] = []
    for store in {str(s): s for s in stagings}.values():
        removed += cleanup_staging(store, known)
    return removed
