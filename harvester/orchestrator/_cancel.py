"""Cancelling remote tasks: one rule for `harvester cancel` and for `run --cancel-on-exit`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog

from harvester._exceptions import ApiError
from harvester.api import Backend
from harvester.state import ShardRecord, StateStore

__all__ = ["cancel_tasks", "cancellable"]

log = structlog.get_logger("harvester")


def cancellable(shards: Iterable[ShardRecord]) -> list[ShardRecord]:
    """Leaves with a remote task created and its results not yet paged (the first page only
    announces the task). A task already being paged has finished running: cancelling it frees
    nothing and would throw away the pages fetched."""
    return [
        s
        for s in shards
        if s.task_id and s.pages <= 1 and s.status in ("pending", "running", "parked")
    ]


async def cancel_tasks(
    backend: Backend[Any], state: StateStore, leaves: Iterable[ShardRecord]
) -> list[str]:
    """Cancel each leaf's task through the study's own backend (the SDK for pyrqs) and forget
    it: resuming a cancelled task would fail the window and park it, so the next run creates a
    fresh one. Returns the keys of the leaves whose task was cancelled."""
    done: list[str] = []
    for leaf in leaves:
        if leaf.task_id is None:
            continue
        try:
            cancelled = await backend.cancel(int(leaf.task_id))
        except (ApiError, ValueError) as exc:
            log.warning("task_cancel_failed", leaf=leaf.key, error=str(exc))
            continue
        if cancelled:
            state.restart_leaf(leaf.key)
            log.info("task_cancelled", leaf=leaf.key, task_id=leaf.task_id)
            done.append(leaf.key)
    return done
