"""The VCE test stage: each window is sampled, never harvested whole.

In TikTok's test stage a task returns a random sample of its matches, and the whole client gets
at most 5,000 records a day. A saturated task is therefore not a window to split (more tasks
only draw more sample): every window gets one task, and every task the same `limit`, the day's
record budget spread over the study's windows, so the first windows cannot take the whole day
and every window's sample has the same cap (samples stay comparable across windows).

`limit_per_window = min(study.limit, max(1, daily_records // windows))`: it depends only on the
study, so a resumed run, a run on the next quota day and `status` all agree on it. When a day
is already partly spent, or a study has more windows than a day has records, the windows that
do not fit wait for the next quota day at the same limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harvester.plan.shards import plan_study

if TYPE_CHECKING:
    from harvester.config import Study

__all__ = ["SamplePlan", "completeness", "sample_plan"]


@dataclass(frozen=True, slots=True)
class SamplePlan:
    """How a test-stage study samples its windows."""

    limit_per_window: int
    day_budget: int
    windows: int

    @property
    def max_records(self) -> int:
        """The most records the whole study can hold."""
        return self.limit_per_window * self.windows

    @property
    def quota_days(self) -> int:
        """Quota days needed when every window fills its limit."""
        return max(1, math.ceil(self.max_records / self.day_budget))


def sample_plan(study: Study, windows: int | None = None) -> SamplePlan | None:
    """The study's sample plan; None unless it is a test-stage RQS study."""
    if not study.is_sample:
        return None
    n = len(plan_study(study)) if windows is None else windows
    budget = study.quota.daily_records
    cap = study.limit if study.limit is not None else budget
    return SamplePlan(min(cap, max(1, budget // max(1, n))), budget, n)


def completeness(study: Study, windows_sampled: int) -> dict[str, Any]:
    """What `_harvest.json`, `status` and `verify` say the dataset is: "complete" (every
    match of the query) or "sample" (a random sample per window, with how it was drawn)."""
    plan = sample_plan(study)
    if plan is None:
        return {"completeness": "complete"}
    return {
        "completeness": "sample",
        "sample": {
            "stage": "test",
            "limit_per_window": plan.limit_per_window,
            "day_budget": plan.day_budget,
            "windows": plan.windows,
            "windows_sampled": windows_sampled,
            "population": "public videos of creators with at least 25,000 followers",
        },
    }


def describe(info: dict[str, Any]) -> str:
    """One line for `status` and `verify`."""
    sample = info.get("sample")
    if not sample:
        return "complete (every matching video)"
    return (
        f"sample (test stage): at most {sample['limit_per_window']:,} random videos per window, "
        f"{sample['day_budget']:,} a day; {sample['windows_sampled']:,}/{sample['windows']:,} "
        "windows sampled"
    )
