"""The day's budget and the leaf queue on their own: what is admitted, what waits, when a day
is over, and how windows are sized by pages."""

from __future__ import annotations

import anyio
import pytest

from harvester.orchestrator._budget import DayBudget, DayOver, LeafQueue, Need, WindowSizer
from harvester.plan import DAY

pytestmark = pytest.mark.anyio


def sizer(**kw: object) -> WindowSizer:
    args: dict[str, object] = {
        "rest": True,
        "prior": None,
        "daily_requests": 1000,
        "daily_records": 100_000,
        "concurrency": 5,
        "fraction": 0.5,
    }
    args.update(kw)
    return WindowSizer(**args)  # type: ignore[arg-type]


def test_windows_are_sized_by_pages_from_the_prior_then_from_what_was_observed() -> None:
    s = sizer()
    # 1,000 requests x 0.5 / 5 windows in flight: 100 pages a window.
    assert s.share == Need(100, 10_000)
    assert s.records_per_day == 1_000 and s.window_days() == 10  # the prior: 10 pages a day
    assert not s.too_big(10 * DAY) and s.too_big(11 * DAY)
    s.observe(records=500, seconds=2 * DAY)  # 250 a day observed
    assert s.observed and s.window_days() == 40
    # A window half fetched needs what is left of it.
    assert s.need(4 * DAY, pages_done=6, records_done=600) == Need(4, 400)


async def test_the_queue_hands_out_what_fits_and_says_when_the_day_is_over() -> None:
    budget = DayBudget(lambda: Need(10, 10_000))
    queue = LeafQueue(["big", "small"])
    needs = {"big": Need(8, 800), "small": Need(3, 300)}

    def chooser() -> object:
        free = budget.free()

        def choose(key: str) -> bool:
            if needs[key].fits(free):
                budget.hold(key, needs[key])
                return True
            return False

        return choose

    assert await queue.take(chooser) == "big"  # type: ignore[arg-type]
    # 2 requests left after what "big" still needs: "small" waits until "big" is done.
    with anyio.move_on_after(0.05) as scope:
        await queue.take(chooser)  # type: ignore[arg-type]
    assert scope.cancelled_caught
    budget.release("big")
    needs["small"] = Need(30, 300)  # and now it would not fit a whole day
    queue.finished()
    with pytest.raises(DayOver):
        await queue.take(chooser)  # type: ignore[arg-type]
    assert queue.outstanding == 1 and len(queue) == 1
