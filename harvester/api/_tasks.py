"""The task life cycle both Research Query Service backends share: create, wait, page, retry.

The HTTP binding and the pyrqs SDK differ only in how one verb is called; waiting for a free
task slot, polling with backoff, re-creating failed or expired tasks and resuming from
`(task_id, cursor)` are written once here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import structlog

from harvester._exceptions import (
    ApiError,
    TaskAnalysisFailed,
    TaskExpired,
    TaskNotFound,
    TooManyRunningTasks,
)
from harvester.api.types import Page, Record, Resume, TaskStatus
from harvester.query import SeedQuery, Stage, parse_seed_query, validate_fields, validate_limit

__all__ = ["PollPolicy", "TaskRunner"]

log = structlog.get_logger("harvester.api")

_STATES = {
    s.lower(): s
    for s in ("Created", "Validating", "Processing", "Completed", "AnalysisFailed", "Cancelled")
}


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """Status polls start at `initial` seconds and grow by `factor` up to `maximum`.

    `timeout` bounds the wait for one task; `busy_timeout` the wait for a free task slot
    (429 too_many_running_tasks). None waits for ever.
    """

    initial: float = 0.5
    maximum: float = 10.0
    factor: float = 1.5
    timeout: float | None = 6 * 3600.0
    busy_timeout: float | None = 3600.0


def normalise_status(raw: Any, message: Any = None) -> TaskStatus:
    text = str(raw or "").strip()
    return TaskStatus(
        _STATES.get(text.lower(), text), str(message) if message not in (None, "") else None
    )


def as_seed_query(condition_groups: SeedQuery | Any) -> SeedQuery:
    """Accept a SeedQuery or the SDK's raw list of groups (validated before any request)."""
    if isinstance(condition_groups, SeedQuery):
        return condition_groups
    return parse_seed_query(condition_groups)


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
    ) -> None:
        self.stage: Stage = stage
        self.limit = validate_limit(limit, stage)
        self.poll = poll or PollPolicy()
        self.analysis_retries = analysis_retries
        self.page_size = page_size

    @abstractmethod
    async def create(
        self,
        condition_groups: SeedQuery | Any,
        fields: str | Sequence[str],
        limit: int | None = None,
    ) -> int: ...

    @abstractmethod
    async def status(self, task_id: int) -> TaskStatus: ...

    @abstractmethod
    async def cancel(self, task_id: int) -> bool: ...

    @abstractmethod
    def _result_pages(
        self, task_id: int, cursor: int, seen: set[int], limit: int | None, max_count: int
    ) -> AsyncIterator[Page]: ...

    def _request(
        self, condition_groups: SeedQuery | Any, fields: str | Sequence[str], limit: int | None
    ) -> tuple[SeedQuery, tuple[str, ...], int]:
        query = as_seed_query(condition_groups)
        wanted = validate_fields(fields, "rqs")
        return query, wanted, self.limit if limit is None else validate_limit(limit, self.stage)

    async def wait(self, task_id: int) -> TaskStatus:
        """Poll until the task is Completed; raise TaskAnalysisFailed or a cancelled error."""
        delay = self.poll.initial
        deadline = None if self.poll.timeout is None else anyio.current_time() + self.poll.timeout
        while True:
            st = await self.status(task_id)
            if st.status == "Completed":
                return st
            if st.status == "AnalysisFailed":
                raise TaskAnalysisFailed(
                    f"task {task_id} failed: {st.message or 'no reason given'}",
                    code="AnalysisFailed",
                )
            if st.status == "Cancelled":
                raise ApiError(f"task {task_id} was cancelled", code="Cancelled", kind="cancelled")
            if deadline is not None and anyio.current_time() + delay > deadline:
                raise ApiError(
                    f"task {task_id} still {st.status} after {self.poll.timeout:g} s",
                    kind="task_timeout",
                )
            await anyio.sleep(delay)
            delay = min(self.poll.maximum, delay * self.poll.factor)

    async def create_when_possible(
        self, query: SeedQuery, fields: Sequence[str], limit: int
    ) -> int:
        """`create`, waiting for a free slot while the running-task cap is reached."""
        delay = self.poll.initial
        waited = 0.0
        while True:
            try:
                task_id = await self.create(query, fields, limit)
            except TooManyRunningTasks:
                busy = self.poll.busy_timeout
                if busy is not None and waited + delay > busy:
                    raise
                log.info("task_slots_busy", delay=delay, waited=round(waited, 3))
                await anyio.sleep(delay)
                waited += delay
                delay = min(self.poll.maximum, delay * self.poll.factor)
                continue
            log.info("task_created", task_id=task_id, limit=limit)
            return task_id

    async def result_pages(
        self, task_id: int, *, cursor: int = 0, max_count: int = 10_000
    ) -> AsyncIterator[Page]:
        """Pages of a Completed task's result from `cursor`, deduplicated by id."""
        async for page in self._result_pages(task_id, cursor, set(), None, max_count):
            yield page

    async def task_pages(
        self,
        condition_groups: SeedQuery | Any,
        fields: str | Sequence[str],
        *,
        limit: int | None = None,
        resume: Resume | None = None,
        seen_ids: Iterable[int] = (),
    ) -> AsyncIterator[Page]:
        """Create (or resume) a task and page its result.

        A new task first yields an empty page carrying its `task_id`, so the caller can
        checkpoint the id before the wait. An expired or vanished task, or one that failed its
        analysis (at most `analysis_retries` times), is created again and announced the same
        way, by an empty page with the new `task_id`, cursor 0 and `restarted=True`; ids
        already delivered stay filtered out.
        """
        query, wanted, lim = self._request(condition_groups, fields, limit)
        seen = set(seen_ids)
        failures = 0
        if resume is not None and resume.task_id is not None:
            task_id, cursor = resume.task_id, resume.cursor
        else:
            task_id, cursor = await self.create_when_possible(query, wanted, lim), 0
            yield Page([], 0, None, True, 0, task_id=task_id)
        while True:
            try:
                await self.wait(task_id)
                async for page in self._result_pages(task_id, cursor, seen, lim, self.page_size):
                    yield page
                return
            except (TaskExpired, TaskNotFound, TaskAnalysisFailed) as exc:
                if isinstance(exc, TaskAnalysisFailed):
                    failures += 1
                    if failures > self.analysis_retries:
                        raise
                log.warning("task_recreated", task_id=task_id, reason=exc.kind)
                task_id, cursor = await self.create_when_possible(query, wanted, lim), 0
                yield Page([], 0, None, True, 0, restarted=True, task_id=task_id)

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

    async def query(
        self,
        condition_groups: SeedQuery | Any,
        fields: str | Sequence[str],
        limit: int | None = None,
    ) -> list[Record]:
        """Create, wait, page: every record of one task in a list (the SDK's `query`)."""
        out: list[Record] = []
        async for page in self.task_pages(condition_groups, fields, limit=limit):
            out.extend(page.records)
        return out
