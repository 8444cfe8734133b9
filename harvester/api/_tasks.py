"""The task life cycle both Research Query Service backends share: create, wait, page, retry.

The HTTP binding and the pyrqs SDK differ only in how one verb is called; waiting for a free
task slot, polling with backoff, re-creating failed or expired tasks and resuming from
`(task_id, cursor)` are written once here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import anyio
import pyarrow as pa
import structlog

from harvester._exceptions import (
    QueryError,
    TaskAnalysisFailed,
    TaskCancelled,
    TaskExpired,
    TaskNotFound,
    TaskTimedOut,
    TooManyRunningTasks,
)
from harvester.api._http import NoHooks, RequestHooks
from harvester.api._records import clean, fresh_records, fresh_rows
from harvester.api.types import Page, Record, Resume, TaskStatus
from harvester.kinds import CATEGORIES
from harvester.query import (
    SeedQuery,
    Stage,
    check_region_codes,
    parse_seed_query,
    validate_fields,
    validate_limit,
)

__all__ = ["PollPolicy", "ResultRead", "TaskClock", "TaskOptions", "TaskRunner"]

log = structlog.get_logger("harvester.api")

VIDEO = "video"

#: Steps of `TaskClock.phase`: any run of consecutive multiples is spread evenly modulo 1.
_GOLDEN = (5**0.5 - 1) / 2

_STATES = {
    s.lower(): s
    for s in ("Created", "Validating", "Processing", "Completed", "AnalysisFailed", "Cancelled")
}


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """When to ask a task's status: every `initial` seconds at first, then every `fraction` of
    the task's age (so the wait past completion stays a small share of the task's time), never
    more than `maximum` apart. Once tasks have completed, a new one is first asked when the
    fastest of the recent ones was still running (`TaskClock`), then every `fine` of its age,
    and never later than the age at which the fastest of them was seen done.

    `rate` bounds the status polls a second of all the client's waiting tasks together (None:
    no bound): polls count against the API's rate limit and queue in the client's own limiter
    with the creates and result pages, which must not wait behind them.

    `factor` bounds how fast the interval may grow from one poll to the next. `timeout` bounds
    the wait for one task; `busy_timeout` the wait for a free task slot (429
    too_many_running_tasks). None waits for ever.
    """

    initial: float = 0.5
    maximum: float = 10.0
    factor: float = 1.5
    timeout: float | None = 6 * 3600.0
    busy_timeout: float | None = 3600.0
    fraction: float = 0.2
    fine: float = 0.05
    rate: float | None = None

    def spacing(self, waiting: int) -> float:
        """The shortest interval between one task's polls that keeps `waiting` tasks within
        `rate`."""
        return 0.0 if self.rate is None else waiting / self.rate

    def first_wait(self, lead: float, phase: float, waiting: int, deadline: float | None) -> float:
        """The wait before a fresh task's first poll: past `lead`, the age at which recent
        tasks were still running (0: none known), at this task's `phase` of the interval."""
        spacing = self.spacing(waiting)
        if lead <= 0:
            return phase * max(self.initial, spacing)
        # Nothing to ask before `lead`. Tasks started together then take different points of
        # the fine interval.
        fine = max(self.initial * self.fine / self.fraction, self.fine * lead, spacing)
        first = lead + phase * fine
        return min(first, self.maximum) if deadline is None else first

    def next_wait(self, age: float, fine: bool, waiting: int) -> float:
        """The wait before the next poll of a task `age` seconds old."""
        if fine:
            delay = max(self.initial * self.fine / self.fraction, self.fine * age)
        else:
            delay = max(self.initial, self.fraction * age)
        return max(min(self.maximum, delay), self.spacing(waiting))


def _finished(st: TaskStatus, task_id: int) -> bool:
    """True once the task is Completed; raises when it failed or was cancelled."""
    if st.status == "AnalysisFailed":
        raise TaskAnalysisFailed(
            f"task {task_id} failed: {st.message or 'no reason given'}", code="AnalysisFailed"
        )
    if st.status == "Cancelled":
        raise TaskCancelled(f"task {task_id} was cancelled", code="Cancelled")
    return st.status == "Completed"


class TaskClock:
    """How long this client's recent tasks took, as seen through their status polls, shared by
    the tasks waiting at the same time.

    Each completed task leaves two ages: the last at which it was still running and the first
    at which it was Completed. The next task is first polled at the smallest recent "still
    running" age: no recent task was done sooner, so those polls could only have said "not yet".
    And no waiting task sleeps past the smallest recent "Completed" age (unless it was already
    seen running at that age: it is a slower one): tasks alike take about as long, so that is
    where the answer most likely changes. A task seen Completed is news for the tasks waiting
    beside it: it wakes them to look at their next poll again, and those at least as old ask
    at once instead of at the end of their interval.

    Each new task also takes its own point in its poll interval (`phase`): tasks started
    together poll out of step, so together they look at their common end far more often than
    any one of them does, for no more polls.
    """

    def __init__(self, keep: int = 16) -> None:
        self._running_at: deque[float] = deque(maxlen=keep)
        self._done_at: deque[float] = deque(maxlen=keep)
        self._started = 0
        self._news: anyio.Event | None = None
        #: Tasks in `TaskRunner.wait` now: they share the poll rate.
        self.waiting = 0

    def completed(self, last_running_age: float, done_age: float) -> None:
        self._running_at.append(last_running_age)
        self._done_at.append(done_age)
        if self._news is not None:
            self._news.set()
            self._news = None

    def first_poll(self) -> float:
        return min(self._running_at, default=0.0)

    def done_by(self, running_at: float) -> float | None:
        """The smallest recent age at which a task was seen Completed, of those above
        `running_at` (None: no such age)."""
        return min((a for a in self._done_at if a > running_at), default=None)

    def phase(self) -> float:
        """A new task's point in [0, 1) of its poll interval: successive tasks step along the
        golden ratio, so any few started together spread evenly over the interval."""
        self._started += 1
        return (self._started * _GOLDEN) % 1.0

    async def sleep(self, delay: float, started: float, running_at: float) -> None:
        """Sleep `delay` seconds, or less: never past `started` + `done_by(running_at)`, which a
        task seen Completed meanwhile may bring forward (or into the past: then return)."""
        wake = anyio.current_time() + delay
        while True:
            if (done := self.done_by(running_at)) is not None:
                wake = min(wake, started + done)
            left = wake - anyio.current_time()
            if left <= 0:
                return
            if self._news is None:
                self._news = anyio.Event()
            with anyio.move_on_after(left):
                await self._news.wait()


def category_request(
    category: str, condition_groups: Any, fields: str | Sequence[str]
) -> tuple[list[Any], tuple[str, ...]]:
    """A non-video category's condition groups and fields, checked before any request: the
    category is the VCE's, the fields its enrichment dataset's columns (the key comes anyway)."""
    kind = CATEGORIES.get(category)
    if kind is None:
        known = ", ".join([VIDEO, *CATEGORIES])
        raise QueryError(f"unknown category {category!r}; use one of {known}")
    if not isinstance(condition_groups, list) or not condition_groups:
        raise QueryError(
            f"category {category!r}: condition_groups is a list of groups naming targets by "
            f"{kind.target}"
        )
    names = [n for n, _ in kind.columns]
    asked = [f.strip() for f in (fields.split(",") if isinstance(fields, str) else fields)]
    asked = [f for f in asked if f]
    unknown = [f for f in asked if f not in names]
    if unknown or not asked:
        raise QueryError(
            f"category {category!r}: unknown or no field(s) {', '.join(unknown)}; "
            f"use: {', '.join(names)}"
        )
    return condition_groups, tuple(asked)


def normalise_status(raw: Any, message: Any = None) -> TaskStatus:
    text = str(raw or "").strip()
    return TaskStatus(
        _STATES.get(text.lower(), text), str(message) if message not in (None, "") else None
    )


def as_seed_query(condition_groups: SeedQuery | Any) -> SeedQuery:
    """Accept a SeedQuery or the SDK's raw list of groups (validated before any request)."""
    if isinstance(condition_groups, SeedQuery):
        return condition_groups
    query = parse_seed_query(condition_groups)
    check_region_codes(query)  # "UK" or "CA" would cost a task and return nothing
    return query


class TaskOptions(TypedDict, total=False):
    """What every Research Query Service backend is built with (see `TaskRunner`)."""

    limit: int | None
    stage: Stage
    poll: PollPolicy | None
    analysis_retries: int
    page_size: int
    task_slots: anyio.CapacityLimiter | None


@dataclass(slots=True)
class ResultRead:
    """The reading of one Completed task's result: what each page is checked and counted
    against, whichever way the backend fetches it."""

    task_id: int
    #: Ids already delivered (updated as pages are made).
    seen: set[int]
    #: The task's record limit: a total at it means the result may be cut short.
    limit: int | None
    #: Records a page at most.
    size: int
    #: What the task asked for, when known (lets a backend decode into Arrow).
    fields: Sequence[str] = field(default=())
    #: The VCE category asked: records of any other than `video` are an enrichment's rows,
    #: kept as they came (no video names, no id deduplication: two users like one video).
    category: str = "video"

    def page(
        self,
        raw: list[Any],
        cursor: int,
        has_more: bool,
        total: int | None,
        *,
        received: int | None = None,
        rows: pa.StructArray | None = None,
        cleaned: bool = False,
    ) -> Page:
        """A page of the result: records deduplicated against `seen`; `received` counts what
        the answer held (by default `raw`'s length)."""
        if self.category != VIDEO:
            records = [r if cleaned else clean(r) for r in raw if isinstance(r, dict)]
        else:
            records = fresh_records(raw, self.seen, cleaned=cleaned)
        return Page(
            records=records,
            cursor=cursor,
            search_id=None,
            has_more=has_more,
            raw_count=len(raw) if received is None else received,
            task_id=self.task_id,
            total=total,
            saturated=self.limit is not None and total is not None and total >= self.limit,
            rows=fresh_rows(rows, self.seen) if rows is not None else None,
        )


class _Slot:
    """One task's hold on the shared task slots. A token, not the current task, borrows the
    slot: an abandoned page generator may be closed from another task."""

    def __init__(self, slots: anyio.CapacityLimiter | None) -> None:
        self._slots = slots
        self._held = False

    async def take(self) -> None:
        if self._slots is not None and not self._held:
            await self._slots.acquire_on_behalf_of(self)
            self._held = True

    def give(self) -> None:
        if self._slots is not None and self._held:
            self._slots.release_on_behalf_of(self)
            self._held = False


class TaskRunner(ABC):
    """Template for a Research Query Service backend: subclasses supply the four verbs."""

    def __init__(
        self,
        *,
        limit: int | None = None,
        stage: Stage = "execution",
        poll: PollPolicy | None = None,
        analysis_retries: int = 2,
        page_size: int = 10_000,
        task_slots: anyio.CapacityLimiter | None = None,
    ) -> None:
        # Subclasses take these as `**options: Unpack[TaskOptions]`: keep the two in step.
        self.stage: Stage = stage
        self.limit = validate_limit(limit, stage)
        self.poll = poll or PollPolicy()
        self.analysis_retries = analysis_retries
        self.page_size = page_size
        #: Held from a task's create until it is seen finished: the caller's share of the API's
        #: running-task cap, so a worker paging results or writing files never holds a slot.
        self.task_slots = task_slots
        self.clock = TaskClock()
        #: Sees the tasks that fail server-side (they cost a create and are counted by kind).
        self.hooks: RequestHooks = NoHooks()

    async def create(
        self,
        condition_groups: SeedQuery | Any,
        fields: str | Sequence[str],
        limit: int | None = None,
        *,
        category: str = VIDEO,
    ) -> int:
        """Create a task of `category` and return its id; the query, fields and limit are
        checked first, so a mistake costs no request."""
        return await self._create(
            category, *self._request(condition_groups, fields, limit, category)
        )

    @abstractmethod
    async def _create(
        self, category: str, groups: list[Any], fields: tuple[str, ...], limit: int
    ) -> int:
        """Send one create of a checked query (`groups`: its condition groups as JSON); the
        task id."""

    def _request(
        self,
        condition_groups: SeedQuery | Any,
        fields: str | Sequence[str],
        limit: int | None,
        category: str = VIDEO,
    ) -> tuple[list[Any], tuple[str, ...], int]:
        lim = self.limit if limit is None else validate_limit(limit, self.stage)
        if category == VIDEO:
            query = as_seed_query(condition_groups)
            return query.to_json(), validate_fields(fields, "rqs"), lim
        return (*category_request(category, condition_groups, fields), lim)

    @abstractmethod
    async def status(self, task_id: int) -> TaskStatus: ...

    @abstractmethod
    async def cancel(self, task_id: int) -> bool: ...

    @abstractmethod
    def _result_pages(self, read: ResultRead, cursor: int) -> AsyncIterator[Page]:
        """Pages of `read`'s task from `cursor` (each made by `read.page`)."""

    async def wait(self, task_id: int, *, fresh: bool = False) -> TaskStatus:
        """Poll until the task is Completed; raise TaskAnalysisFailed or a cancelled error.

        `fresh`: the task was created just now, so its age is known and the first poll can
        wait for the time recent tasks took.
        """
        poll, clock = self.poll, self.clock
        clock.waiting += 1
        try:
            return await self._wait(task_id, fresh, poll, clock)
        finally:
            clock.waiting -= 1

    async def _wait(
        self, task_id: int, fresh: bool, poll: PollPolicy, clock: TaskClock
    ) -> TaskStatus:
        started = anyio.current_time()
        deadline = None if poll.timeout is None else started + poll.timeout
        running_at = 0.0
        if fresh:
            first = poll.first_wait(clock.first_poll(), clock.phase(), clock.waiting, deadline)
            await clock.sleep(first, started, running_at)
        while True:
            asked = anyio.current_time() - started
            st = await self.status(task_id)
            if _finished(st, task_id):
                if fresh:
                    clock.completed(running_at, asked)
                return st
            running_at = asked
            # Close to the end recent tasks took: poll finely.
            fine = fresh and clock.first_poll() > 0
            delay = poll.next_wait(anyio.current_time() - started, fine, clock.waiting)
            if deadline is not None and anyio.current_time() + delay > deadline:
                raise TaskTimedOut(f"task {task_id} still {st.status} after {poll.timeout:g} s")
            if fresh:
                await clock.sleep(delay, started, running_at)
            else:
                await anyio.sleep(delay)

    async def create_when_possible(
        self,
        query: SeedQuery | Any,
        fields: str | Sequence[str],
        limit: int | None,
        *,
        category: str = VIDEO,
    ) -> int:
        """`create`, waiting for a free slot while the running-task cap is reached."""
        delay = self.poll.initial
        waited = 0.0
        while True:
            try:
                task_id = await self.create(query, fields, limit, category=category)
            except TooManyRunningTasks:
                busy = self.poll.busy_timeout
                if busy is not None and waited + delay > busy:
                    raise
                log.info("task_slots_busy", delay=delay, waited=round(waited, 3))
                await anyio.sleep(delay)
                waited += delay
                delay = min(self.poll.maximum, delay * self.poll.factor)
                continue
            log.info("task_created", task_id=task_id, limit=limit, category=category)
            return task_id

    async def result_pages(
        self, task_id: int, *, cursor: int = 0, max_count: int = 10_000, category: str = VIDEO
    ) -> AsyncIterator[Page]:
        """Pages of a Completed task's result from `cursor` (video records deduplicated by
        id)."""
        read = ResultRead(task_id, set(), None, max_count, category=category)
        async for page in self._result_pages(read, cursor):
            yield page
            del page  # not alive while the next page is fetched (see `task_pages`)

    async def task_pages(
        self,
        condition_groups: SeedQuery | Any,
        fields: str | Sequence[str],
        *,
        limit: int | None = None,
        resume: Resume | None = None,
        seen_ids: Iterable[int] = (),
        category: str = VIDEO,
    ) -> AsyncIterator[Page]:
        """Create (or resume) a task of `category` and page its result.

        A new task first yields an empty page carrying its `task_id`, so the caller can
        checkpoint the id before the wait. An expired or vanished task, or one that failed its
        analysis (at most `analysis_retries` times), is created again and announced the same
        way, by an empty page with the new `task_id`, cursor 0 and `restarted=True`; ids
        already delivered stay filtered out.
        """
        _, wanted, lim = self._request(condition_groups, fields, limit, category)
        seen = set(seen_ids)
        failures = 0
        slot = _Slot(self.task_slots)
        try:
            await slot.take()  # a resumed task may still be running: it holds a slot too
            fresh = resume is None or resume.task_id is None
            if resume is not None and resume.task_id is not None:
                task_id, cursor = resume.task_id, resume.cursor
            else:
                task_id = await self.create_when_possible(
                    condition_groups, wanted, lim, category=category
                )
                cursor = 0
                yield Page([], 0, None, True, 0, task_id=task_id)
            while True:
                try:
                    await self.wait(task_id, fresh=fresh)
                    slot.give()
                    # A category's pages are not decoded into video rows (Arrow or names).
                    shown = wanted if category == VIDEO else ()
                    read = ResultRead(task_id, seen, lim, self.page_size, shown, category)
                    async for page in self._result_pages(read, cursor):
                        yield page
                        # A suspended generator's locals stay alive: drop the page before
                        # asking for the next, or every leaf keeps its last page (tens of MB)
                        # while the next is fetched, whatever the shared page slots allow.
                        del page
                    return
                except (TaskExpired, TaskNotFound, TaskAnalysisFailed) as exc:
                    self.hooks.on_error(exc.kind)
                    if isinstance(exc, TaskAnalysisFailed):
                        failures += 1
                        if failures > self.analysis_retries:
                            raise
                    log.warning("task_recreated", task_id=task_id, reason=exc.kind)
                    slot.give()
                    await slot.take()
                    task_id, cursor, fresh = (
                        await self.create_when_possible(
                            condition_groups, wanted, lim, category=category
                        ),
                        0,
                        True,
                    )
                    yield Page(
                        [], 0, None, True, 0, restarted=True, restart_reason=exc.kind,
                        task_id=task_id,
                    )  # fmt: skip
        finally:
            slot.give()

    async def pages(
        self,
        query: SeedQuery,
        start_epoch: int,
        end_epoch: int,
        fields: Sequence[str],
        *,
        resume: Resume | None = None,
        seen_ids: Iterable[int] = (),
    ) -> AsyncIterator[Page]:
        """The `Backend` view: the query restricted to create_time in [start, end)."""
        async for page in self.task_pages(
            query.with_window(start_epoch, end_epoch), fields, resume=resume, seen_ids=seen_ids
        ):
            yield page
            del page  # not alive while the next page is fetched (see `task_pages`)

    async def query(
        self,
        condition_groups: SeedQuery | Any,
        fields: str | Sequence[str],
        limit: int | None = None,
        *,
        category: str = VIDEO,
    ) -> list[Record]:
        """Create, wait, page: every record of one task in a list (the SDK's `query`)."""
        out: list[Record] = []
        async for page in self.task_pages(condition_groups, fields, limit=limit, category=category):
            out.extend(page.as_records())
        return out
