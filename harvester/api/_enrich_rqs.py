"""The enrichments through the Research Query Service: one VCE category task for a batch of
targets instead of one endpoint call (or many pages) per target.

A batch's task names its targets with one `IN` condition on the kind's key
(`Kind.condition_groups`), asks for the enrichment dataset's columns, and its rows come back
grouped by target in the shape the endpoint client gives (the API's field names, the key left
to the caller), so the sink lands both alike. A task that returns exactly its `limit` records
may have left rows out: at the execution stage its batch is split in halves, each a task of
its own, until none is saturated (a single target is asked again with the stage's largest
limit). At the test stage a saturated task is a sample, never split (fact 11).

What the VCE cannot say is why a target has no rows: a private, deleted or under-18 account
and an account with nothing to list look alike in a batch's result. The caller records such a
target as `empty`, not as the endpoint client's verdicts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from harvester.api._tasks import TaskRunner
from harvester.api.types import Record, Resume, utcnow
from harvester.kinds import Kind
from harvester.query import STAGE_LIMITS

__all__ = ["BatchDone", "RqsEnrichClient"]

log = structlog.get_logger("harvester.api")


@dataclass(frozen=True, slots=True)
class BatchDone:
    """One finished task: its targets (as asked) and their records by target (every target
    present, an empty list for one without rows); `saturated` when even the task of a single
    target came back at its limit (its rows may be cut, or are a test-stage sample)."""

    task_id: int
    targets: tuple[Any, ...]
    records: dict[Any, list[Record]]
    saturated: bool = False
    fetched_at: datetime = field(default_factory=utcnow)


class RqsEnrichClient:
    """Batches of one enrichment kind's targets through a `TaskRunner` (the HTTP binding or
    the pyrqs SDK). `replies` (comments): keep the replies the category serves with each
    comment; `max_per_target` caps a target's rows (and, for comments, each comment's
    replies) as the endpoint client's `limit` does."""

    def __init__(
        self,
        runner: TaskRunner,
        kind: Kind,
        *,
        replies: bool = False,
        max_per_target: int | None = None,
        limit: int | None = None,
    ) -> None:
        if kind.category is None:
            raise ValueError(f"the VCE serves no category for {kind.name}")
        self.runner = runner
        self.kind = kind
        self.category = kind.category
        self.replies = replies
        self.max_per_target = max_per_target
        #: Records a task at most (None: the runner's); saturating it splits the batch.
        self.limit = limit
        self.fields = ",".join(n for n, _ in kind.columns if n != kind.target)
        #: Tasks created (re-creations of expired ones included).
        self.tasks = 0

    async def batches(
        self,
        targets: Sequence[Any],
        *,
        task_id: int | None = None,
        on_task: Callable[[tuple[Any, ...], int], None] | None = None,
    ) -> AsyncIterator[BatchDone]:
        """Every finished task over `targets`: one, or more when a saturated one is split.

        `task_id` resumes a task created earlier for exactly these targets (polled, never
        created again). `on_task(targets, task_id)` hears of each task as it is created, before
        its wait, so the caller can checkpoint it (a restart then polls it)."""
        pending: list[tuple[tuple[Any, ...], int | None, int | None]] = [
            (tuple(targets), task_id, self.limit)
        ]
        while pending:
            batch, resume, limit = pending.pop(0)
            done = await self._task(batch, resume, limit, on_task)
            if not done.saturated:
                yield done
                continue
            if self.runner.stage == "test":
                # A test-stage task is a random sample of the batch's rows: more tasks would
                # only draw more sample.
                yield done
            elif len(batch) > 1:
                half = len(batch) // 2
                log.info(
                    "batch_split", kind=self.kind.name, targets=len(batch), task_id=done.task_id
                )
                pending[:0] = [(batch[:half], None, limit), (batch[half:], None, limit)]
            elif (limit or self.runner.limit) < (top := STAGE_LIMITS[self.runner.stage][1]):
                pending.insert(0, (batch, None, top))
            else:
                log.warning("target_cut", kind=self.kind.name, target=batch[0], limit=limit)
                yield done

    async def _task(
        self,
        targets: tuple[Any, ...],
        task_id: int | None,
        limit: int | None,
        on_task: Callable[[tuple[Any, ...], int], None] | None,
    ) -> BatchDone:
        kind = self.kind
        resume = None if task_id is None else Resume(task_id=task_id, cursor=0)
        raw: list[Record] = []
        saturated = False
        async for page in self.runner.task_pages(
            kind.condition_groups(targets),
            self.fields,
            limit=limit,
            resume=resume,
            category=self.category,
        ):
            if page.restarted or (not page.records and page.task_id != task_id):
                raw = []  # a new task (created, or again after it expired): start over
                if page.task_id is not None:
                    task_id = page.task_id
                    self.tasks += 1
                    if on_task is not None:
                        on_task(targets, task_id)
                continue
            raw.extend(page.records)
            saturated = saturated or page.saturated
        assert task_id is not None
        return BatchDone(task_id, targets, self._by_target(targets, raw), saturated and bool(raw))

    def _by_target(self, targets: tuple[Any, ...], raw: list[Record]) -> dict[Any, list[Record]]:
        """Rows grouped by target under the API's field names (the dataset's renamed back),
        comments' replies kept or dropped and every cap applied as the endpoint client does."""
        kind = self.kind
        back = {new: old for old, new in kind.renames}
        key = kind.target
        as_target = {str(t): t for t in targets}
        # The key is a field of its own only where the endpoint returns it (a comment's
        # video_id); elsewhere the API's field of that name is another column's (a follower's
        # username is `follower_username`), renamed back below.
        drop = None if key in kind.field_names and key not in back.values() else key
        out: dict[Any, list[Record]] = {t: [] for t in targets}
        for row in raw:
            target = as_target.get(str(row.get(key)))
            if target is None:
                continue  # not asked: a gateway's stray row has no target to land under
            out[target].append({back.get(k, k): v for k, v in row.items() if k != drop})
        if kind.name == "comments":
            return {t: self._comments(t, rows) for t, rows in out.items()}
        cap = self.max_per_target
        return out if cap is None else {t: rows[:cap] for t, rows in out.items()}

    def _comments(self, video_id: Any, rows: list[Record]) -> list[Record]:
        """A video's comments (the first `max_per_target`) then, when asked, the replies of
        those comments (the first `max_per_target` of each), as the endpoint client stores
        them. A comment's replies name it as `parent_comment_id`; a comment names its video."""
        cap = self.max_per_target
        top = [r for r in rows if str(r.get("parent_comment_id")) == str(video_id)]
        top = top if cap is None else top[:cap]
        if not self.replies:
            return top
        kept = {str(r.get("id")) for r in top}
        replies: dict[str, list[Record]] = {}
        for r in rows:
            parent = str(r.get("parent_comment_id"))
            if parent != str(video_id) and parent in kept:
                replies.setdefault(parent, []).append(r)
        more: list[Record] = []
        for c in top:
            found = replies.get(str(c.get("id")), [])
            more += found if cap is None else found[:cap]
        return top + more
