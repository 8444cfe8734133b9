"""A study's plan: the plan shards that together cover its period, before any request is made.

A study has one query, so a shard is identified by its window alone and the shard key is the
window key. Leaves (the splits of a plan shard) are the orchestrator's business; this module
only offers the split rule so that every part of the pipeline splits the same way.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harvester.plan.windows import DAY, Window, plan_windows

if TYPE_CHECKING:
    from harvester.config import Study

__all__ = ["Plan", "PlanShard", "extend_plan", "plan_study", "split_window"]


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
    """Cut the study's period into windows of its window length; no request, no I/O.

    A relative start date moves every day: its windows follow a grid fixed to the calendar
    (whole multiples of the window length since 1970-01-01), so a moving start cuts its first
    window short instead of moving every window.
    """
    windows = plan_windows(study.start_date, study.end_date, study.window_days)
    if study.start_rule is not None and study.window_days > 1:
        step = study.window_days * DAY
        lo, hi = windows[0].start, windows[-1].end
        edges = [lo, *range((lo // step + 1) * step, hi, step), hi]
        windows = [Window(a, b) for a, b in itertools.pairwise(edges)]
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


def extend_plan(
    planned: Sequence[Window], wanted: Sequence[Window]
) -> tuple[list[Window], list[tuple[Window, Window]]]:
    """What a plan that moved (relative dates) adds to the windows already `planned`.

    Returns the windows to add and the (old, new) pairs where a new window completes an old
    one that the end date had cut short (same start, later end, nothing planned after it).
    Whatever is already covered is never planned twice: a window that overlaps planned ones is
    cut to the days they leave uncovered. Planned windows tile without overlap, so each wanted
    window is looked up by bisection (a plan of 50,000 windows costs milliseconds).
    """
    if not planned:
        return list(wanted), []
    ordered = sorted(planned)
    known = set(ordered)
    ends = [p.end for p in ordered]
    last = max(ordered, key=lambda w: w.end)
    add: list[Window] = []
    supersede: list[tuple[Window, Window]] = []
    for w in wanted:
        if w in known:
            continue
        if w.start == last.start and w.end > last.end:
            supersede.append((last, w))
            continue
        edge = w.start
        for p in ordered[bisect.bisect_right(ends, edge) :]:
            if p.start >= w.end:
                break
            if p.start > edge:
                add.append(Window(edge, p.start))
            edge = max(edge, p.end)
        if edge < w.end:
            add.append(Window(edge, w.end))
    return add, supersede
