"""The Research Query Service over HTTP (the project's binding in rqs-http.md).

A task's status is a function of the clock: it is Created, Validating, Processing and then
Completed after the configured durations, so a test that advances the clock sees the lifecycle
without waiting. The query is evaluated on the first `result` call; a task that matches more than
its `limit` keeps `limit` records chosen by a hash of the id, so which ones were left out cannot be
guessed from time order.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from harvester._exceptions import QueryError
from harvester.query import SeedQuery, parse_seed_query, validate_fields, validate_limit
from harvester.simulator import vce
from harvester.simulator.responses import BadBody, error, ok, read_json
from harvester.simulator.vce_categories import (
    CATEGORIES,
    CategoryQuery,
    category_rows,
    parse_category_query,
)

if TYPE_CHECKING:
    from harvester.simulator.app import Simulator

__all__ = ["Task", "TaskStore", "cancel", "create", "result", "status"]

log = structlog.get_logger("harvester.simulator")

UNFINISHED = frozenset({"Created", "Validating", "Processing"})
MAX_PAGE = 10_000
DEFAULT_PAGE = 1_000
_MIX = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1
ANALYSIS_BROKE = "analysis failed: internal error, please create the task again"


@dataclass(slots=True)
class Task:
    """One query task; its status is derived from the clock, not stored."""

    task_id: int
    query: SeedQuery
    fields: tuple[str, ...]
    limit: int
    created_at: float
    failure: str | None = None
    cancelled_at: float | None = None
    ids: tuple[int, ...] | None = None
    #: A category beyond `video` (vce_categories.py): its targets, and its rows once evaluated.
    category: CategoryQuery | None = None
    rows: tuple[dict[str, Any], ...] | None = None


class TaskStore:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.tasks: dict[int, Task] = {}
        self._next_id = 10_000 + sim.rng.randrange(90_000)
        cfg = sim.config
        self._validating_at = cfg.rqs_created
        self._processing_at = cfg.rqs_created + cfg.rqs_validating
        self._completed_at = self._processing_at + cfg.rqs_processing

    def add(
        self, query: SeedQuery, fields: tuple[str, ...], limit: int, failure: str | None
    ) -> Task:
        task = Task(self._next_id, query, fields, limit, self.sim.clock.monotonic(), failure)
        self._next_id += 1
        self.tasks[task.task_id] = task
        return task

    def status(self, task: Task) -> str:
        now = self.sim.clock.monotonic()
        if task.cancelled_at is not None and task.cancelled_at <= now:
            return "Cancelled"
        age = now - task.created_at
        if age < self._validating_at:
            return "Created"
        if age < self._processing_at:
            return "Validating"
        if task.failure is not None:
            return "AnalysisFailed"
        if age < self._completed_at:
            return "Processing"
        return "Completed"

    def expired(self, task: Task) -> bool:
        done_at = task.created_at + self._completed_at
        return self.sim.clock.monotonic() >= done_at + self.sim.config.result_ttl

    def running(self) -> int:
        return sum(1 for t in self.tasks.values() if self.status(t) in UNFINISHED)

    def ids(self, task: Task) -> tuple[int, ...]:
        """The task's records: every match, or `limit` of them picked by a hash of the id.

        Test stage: only videos of creators with enough followers, and a fresh random sample
        of `limit` of them for every task (vce.py).
        """
        if task.ids is None:
            sim = self.sim
            lo, hi = task.query.time_bounds()
            start = sim.corpus.first_day * 86_400 if lo is None else lo
            end = sim.corpus.end_day * 86_400 if hi is None else hi
            matches = task.query.matches
            found = [v["id"] for v in sim.corpus.videos(start, end) if matches(v)]
            if sim.config.stage == "test":
                corpus = sim.corpus
                found = [i for i in found if (v := corpus.get(i)) and vce.eligible(corpus, v)]
                found = vce.sample(found, task.limit, seed=sim.config.seed, task_id=task.task_id)
            elif len(found) > task.limit:
                salt = sim.config.seed * _MIX & _MASK
                found.sort(key=lambda i: ((i ^ salt) * _MIX) & _MASK)
                found = sorted(found[: task.limit])
            task.ids = tuple(found)
            log.info("simulator.task_evaluated", task_id=task.task_id, total=len(found))
        return task.ids

    def find(self, body: dict[str, Any]) -> Task | None:
        raw = body.get("task_id")
        if isinstance(raw, str) and raw.isdigit():
            raw = int(raw)
        return self.tasks.get(raw) if isinstance(raw, int) else None


def _not_found(sim: Simulator, body: dict[str, Any]) -> web.Response:
    msg = f"task {body.get('task_id')!r} not found"
    return error(404, "task_not_found", msg, sim.log_id())


Handler = Callable[["Simulator", web.Request], Awaitable[web.Response]]
TaskHandler = Callable[["Simulator", Task, dict[str, Any]], Awaitable[web.Response]]


def _of_task(handler: TaskHandler) -> Handler:
    """A status/result/cancel handler, handed the task its body names (and the body); a body
    that is not JSON, or names no known task, is answered here."""

    @functools.wraps(handler)
    async def answer(sim: Simulator, request: web.Request) -> web.Response:
        try:
            body = await read_json(request)
        except BadBody as e:
            return error(400, "invalid_params", str(e), sim.log_id())
        task = sim.tasks.find(body)
        return _not_found(sim, body) if task is None else await handler(sim, task, body)

    return answer


async def create(sim: Simulator, request: web.Request) -> web.Response:
    try:
        body = await read_json(request)
    except BadBody as e:
        return error(400, "invalid_params", str(e), sim.log_id())
    category = body.get("category", "video")
    if category != "video":
        return _create_category(sim, body, category)
    failure: str | None = None
    try:
        fields_raw = body.get("fields")
        if not isinstance(fields_raw, str):
            raise QueryError("fields must be a comma-separated string")
        fields = validate_fields(fields_raw, "rqs")
        limit = validate_limit(body.get("limit"), sim.config.stage)
        try:
            query = parse_seed_query(body.get("condition_groups"))
        except QueryError as e:
            if sim.config.validate_on_create:
                raise
            query, failure = SeedQuery(), str(e)
    except QueryError as e:
        return error(400, "invalid_params", str(e), sim.log_id())
    lo, hi = query.time_bounds()
    if sim.faults.poisoned(lo or 0, hi or 2**62, "rqs.create"):
        msg = "Something went wrong. Please try again later."
        return error(500, "internal_error", msg, sim.log_id())
    if sim.tasks.running() >= sim.config.max_running_tasks:
        msg = f"too many running tasks (at most {sim.config.max_running_tasks})"
        return error(429, "too_many_running_tasks", msg, sim.log_id())
    if failure is None and sim.faults.bounded(
        "analysis_failed", query.fingerprint_json(), "rqs.create"
    ):
        failure = ANALYSIS_BROKE
    task = sim.tasks.add(query, fields, limit, failure)
    sim.stats.tasks_created += 1
    log.info("simulator.task_created", task_id=task.task_id, limit=limit)
    return ok({"task_id": task.task_id}, sim.log_id())


def _create_category(sim: Simulator, body: dict[str, Any], category: object) -> web.Response:
    if category not in CATEGORIES:
        known = ", ".join(["video", *CATEGORIES])
        return error(400, "invalid_params", f"unknown category; use one of {known}", sim.log_id())
    try:
        parsed = parse_category_query(
            str(category), body.get("condition_groups"), body.get("fields")
        )
        limit = validate_limit(body.get("limit"), sim.config.stage)
    except QueryError as e:
        return error(400, "invalid_params", str(e), sim.log_id())
    if sim.tasks.running() >= sim.config.max_running_tasks:
        msg = f"too many running tasks (at most {sim.config.max_running_tasks})"
        return error(429, "too_many_running_tasks", msg, sim.log_id())
    task = sim.tasks.add(SeedQuery(), parsed.columns, limit, None)
    task.category = parsed
    sim.stats.tasks_created += 1
    log.info("simulator.task_created", task_id=task.task_id, limit=limit, category=category)
    return ok({"task_id": task.task_id}, sim.log_id())


@_of_task
async def status(sim: Simulator, task: Task, body: dict[str, Any]) -> web.Response:
    state = sim.tasks.status(task)
    data: dict[str, Any] = {"status": state}
    if state == "AnalysisFailed":
        data["message"] = task.failure
    return ok(data, sim.log_id())


@_of_task
async def result(sim: Simulator, task: Task, body: dict[str, Any]) -> web.Response:
    state = sim.tasks.status(task)
    if state != "Completed":
        return error(409, "task_not_completed", f"task is {state}", sim.log_id())
    if sim.tasks.expired(task):
        msg = "task results have expired; create the task again"
        return error(404, "task_expired", msg, sim.log_id())
    cursor, max_count = body.get("cursor", 0), body.get("max_count", DEFAULT_PAGE)
    if (
        isinstance(cursor, bool)
        or not isinstance(cursor, int)
        or cursor < 0
        or isinstance(max_count, bool)
        or not isinstance(max_count, int)
        or not 1 <= max_count <= MAX_PAGE
    ):
        msg = f"cursor must be >= 0 and max_count 1 to {MAX_PAGE:,}"
        return error(400, "invalid_params", msg, sim.log_id())
    # A page never spends more records than the day has left.
    take = min(max_count, sim.ledger.records_left())
    if task.category is not None:
        if task.rows is None:
            task.rows = tuple(
                category_rows(
                    sim, task.category, task.limit, task_id=task.task_id, now=sim.clock.now()
                )
            )
        records = [dict(r) for r in task.rows[cursor : cursor + take]]
        total = len(task.rows)
    else:
        ids = sim.tasks.ids(task)
        fields = task.fields
        records = [
            {f: v[f] for f in fields} for v in sim.corpus.lookup(ids[cursor : cursor + take])
        ]
        sim.faults.mutate_records(records, fields)
        total = len(ids)
    sim.count_records(len(records))
    next_cursor = cursor + len(records)
    data = {
        "result": records,
        "cursor": next_cursor,
        "has_more": next_cursor < total,
        "total": total,
    }
    return ok(data, sim.log_id())


@_of_task
async def cancel(sim: Simulator, task: Task, body: dict[str, Any]) -> web.Response:
    if sim.tasks.status(task) not in UNFINISHED:
        return ok({"success": False}, sim.log_id())
    task.cancelled_at = sim.clock.monotonic()
    log.info("simulator.task_cancelled", task_id=task.task_id)
    return ok({"success": True}, sim.log_id())
