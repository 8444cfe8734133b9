"""Which waiting window runs next, and which is cut first.

A window starts only when what is left of the day's quota can finish it (held with a margin while
it runs); one too big for a day's share is split in time, or, a single day, by the values of the
query's IN list; at the day's end the next window is cut to what the day can still finish. The
sizes come from the records per day observed so far (`WindowSizer`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from harvester.orchestrator._budget import DayBudget, Need, window_sizer
from harvester.orchestrator._leaf import LeafOutcome, LeafRunner
from harvester.orchestrator._settle import new_first
from harvester.plan import DAY, LeafKey, parse_leaf_key
from harvester.state import ShardRecord, StateStore, utc_day

if TYPE_CHECKING:
    from harvester.config import Study

__all__ = ["Scheduler"]

log = structlog.get_logger("harvester.run")


class Scheduler:
    """The order of the run's waiting windows against the day's budget. `progress` remembers
    what windows begun earlier (this run or a previous one) have fetched: their pages need not
    be paid again, unless a night has passed on a public-API search id."""

    def __init__(
        self,
        study: Study,
        state: StateStore,
        budget: DayBudget,
        clock: Callable[[], float],
    ) -> None:
        self.study, self.state, self.budget, self.clock = study, state, budget, clock
        self.sizer = window_sizer(study)
        #: Pages, records and UTC day of the windows begun, by leaf key.
        self.progress: dict[str, tuple[int, int, str]] = {}
        #: Windows to split when their turn comes.
        self.to_split: set[str] = set()
        #: A test-stage sample: every window its own limit, none to size.
        self.sampling = False

    def order(
        self, pending: list[ShardRecord], *, sampling: bool, refreshing: set[str]
    ) -> list[str]:
        """The keys of `pending` in the order they are offered: windows begun on an earlier day
        first (finishing them frees what they staged), then new windows before refreshes (a
        short day leaves the refreshes waiting). The sizes start from what is done."""
        self.sampling = sampling
        self.sizer = window_sizer(self.study)
        for done in self.state.shards(status="done"):
            self.observe(done)
        pending = new_first(pending, refreshing)
        pending.sort(key=lambda s: s.pages == 0)
        self.progress = {
            s.key: (s.pages, s.records, utc_day(s.updated_at)) for s in pending if s.pages
        }
        log.info(
            "schedule",
            leaves=len(pending),
            records_per_day=round(self.sizer.records_per_day, 1),
            basis="observed" if self.sizer.observed else "prior",
            window_share_requests=self.sizer.share.requests,
            window_days=self.sizer.window_days(),
        )
        return [s.key for s in pending]

    def done(self, key: str) -> None:
        """A window finished: its records per day size the next ones."""
        self.observe(self.state.shard(key))
        self.progress.pop(key, None)

    def chooser(self) -> Callable[[str], bool]:
        """Accept the first leaf the day can finish (holding what it needs), or one to split:
        too big for a day's share, or, at the day's end, to cut a piece the day can finish."""
        if self.sampling:
            return lambda key: True  # a test-stage sample: its own limits, no windows to size
        budget, sizer, free = self.budget, self.sizer, self.budget.free()
        alone = budget.in_flight == 0
        fresh = free.requests >= sizer.day.requests
        today = utc_day(self.clock())
        first = True

        def choose(key: str) -> bool:
            nonlocal free, first
            head, first = first, False
            leaf = parse_leaf_key(key)
            window = leaf.window
            pages, records, day = self.progress.get(key, (0, 0, today))
            if day != today and self.study.source == "research-api":
                pages = records = 0  # its search id did not survive the night: a restart
            splittable = not pages and window.seconds >= 2 * DAY
            # A day too big for its share of a day's quota is cut by value when time cannot.
            by_value = (
                not pages
                and not splittable
                and leaf.index is None
                and self._values > 1
                and sizer.known
            )
            if (splittable or by_value) and sizer.too_big(window.seconds):
                # Split when its turn comes, not before: by then the records per day observed
                # so far size its halves.
                self.to_split.add(key)
                return head
            need = sizer.need(self._seconds(leaf), pages, records)
            # Alone on an untouched day, a leaf needs no margin; one no whole day could finish
            # (a day of a huge query) runs alone, across the night.
            lone = alone and fresh and (need.fits(free) or not need.fits(sizer.day))
            if sizer.padded(need).fits(free) or lone:
                log.info(
                    "window_admitted",
                    leaf=key,
                    need_requests=need.requests,
                    free_requests=free.requests,
                    in_flight=budget.in_flight,
                )
                # Held with its margin: a window over its estimate must not starve the others.
                held = sizer.padded(need)
                budget.hold(key, held)
                free = Need(free.requests - held.requests, free.records - held.records)
                return True
            if splittable and head and sizer.padded(sizer.need(DAY)).fits(free):
                # The day's end: a piece of the next window that the day can still finish.
                self.to_split.add(key)
                return True
            return False

        return choose

    def split_if_too_big(self, runner: LeafRunner, key: str) -> LeafOutcome | None:
        """A window not yet begun that is too big for its share of a day, or for what is left
        of today: its halves (the first is looked at again at once)."""
        if key not in self.to_split:
            return None
        self.to_split.discard(key)
        leaf = self.state.shard(key)
        if leaf.pages or leaf.search_id or leaf.task_id:
            return None
        sizer = self.sizer
        if leaf.end - leaf.start < 2 * DAY:
            # A day (the public API asks no less) too big for a day's share: one sub-query per
            # value of the study's IN list, each a share of the day's records.
            children = runner.split_by_value(leaf, "day_too_big_for_a_day")
            return LeafOutcome(children=children) if children else None
        if sizer.too_big(leaf.end - leaf.start):
            why, days = "too_big_for_a_day", sizer.window_days()
        else:
            # The longest first piece what is left of today can finish.
            free, days = self.budget.free(), 1
            while sizer.padded(sizer.need((days + 1) * DAY)).fits(free):
                days += 1
            why = "fill_the_day"
        children = runner.split(leaf, why, min_seconds=DAY, at=leaf.start + days * DAY)
        return LeafOutcome(children=children) if children else None

    @property
    def _values(self) -> int:
        """How many sub-queries a day can be cut into (1: the query has no IN list to cut)."""
        split = self.study.value_split if self.study.source == "research-api" else None
        return len(split.values) if split is not None else 1

    def _seconds(self, leaf: LeafKey) -> int:
        """The seconds of the whole query's records a leaf stands for: a sub-query's share of
        its window (the values are taken as equally busy until each is seen)."""
        return leaf.window.seconds // (1 if leaf.index is None else self._values)

    def observe(self, leaf: ShardRecord) -> None:
        self.sizer.observe(leaf.records, self._seconds(parse_leaf_key(leaf.key)))

    def note_progress(self, key: str) -> None:
        leaf = self.state.shard(key)
        if leaf.pages:
            self.progress[key] = (leaf.pages, leaf.records, utc_day(leaf.updated_at))
