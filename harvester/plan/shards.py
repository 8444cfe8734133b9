"""A study's plan: the plan shards that together cover its period, before any request is made.

A study has one query, so a shard is identified by its window alone and the shard key is the
window key. Leaves (the splits of a plan shard) are the orchestrator's business; this module
only offers the split rule so that every part of the pipeline splits the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harvester.plan.windows import Window, plan_windows

if TYPE_CHECKING:
    from harvester.config import Study

__all__ = ["Plan", "PlanShard", "plan_study", "split_window"]


@dataclass(frozen=True, slots=True)
class PlanShard:
    """One planned `(query, window)` unit; its key is stable across runs and machines."""

    key: str
    window: Window


@dataclass(frozen=True, slots=True)
class Plan:
    """The plan shards of one study in chronological order."""

    source: str
    window_days: int
    shards: tuple[PlanShard, ...]

    def __len__(self) -> int:
        return len(self.shards)

    def __iter__(self) -> Iterator[PlanShard]:
        return iter(self.shards)

    @property
    def start(self) -> int:
        return self.shards[0].window.start

    @property
    def end(self) -> int:
        return self.shards[-1].window.end


def _shards_of(windows: Sequence[Window]) -> tuple[PlanShard, ...]:
    return tuple(PlanShard(w.key, w) for w in windows)


def plan_study(study: Study) -> Plan:
    """Cut the study's period into windows of its window length; no request, no I/O."""
    windows = plan_windows(study.start_date, study.end_date, study.window_days)
    return Plan(
        source=study.source,
        window_days=study.window_days,
        shards=_shards_of(windows),
    )


def split_window(window: Window, *, min_seconds: int = 1) -> tuple[Window, Window] | None:
    """The two halves of `window`, or None when a half would be shorter than `min_seconds`.

    RQS splits saturated tasks down to one second (`min_seconds=1`); the public API splits a
    failing window down to whole days (`min_seconds=DAY`).
    """
    if window.seconds < 2 * min_seconds:
        return None
    first, second = window.halves()
    if first.seconds < min_seconds or second.seconds < min_seconds:
        return None
    return first, second
