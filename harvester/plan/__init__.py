"""The plan stage: a study's period cut into windows (plan shards), and what it will cost.

No requests are made here: planning and estimating work offline and without credentials.
"""

from __future__ import annotations

from harvester.plan.estimate import (
    PRIOR_RECORDS_PER_DAY,
    REST_PAGE,
    RQS_PAGE,
    Estimate,
    FinishedShard,
    estimate_plan,
)
from harvester.plan.shards import Plan, PlanShard, extend_plan, plan_study, split_window
from harvester.plan.subqueries import LeafKey, leaf_window, parse_leaf_key, sub_key
from harvester.plan.windows import DAY, Window, plan_windows

__all__ = [
    "DAY",
    "PRIOR_RECORDS_PER_DAY",
    "REST_PAGE",
    "RQS_PAGE",
    "Estimate",
    "FinishedShard",
    "LeafKey",
    "Plan",
    "PlanShard",
    "Window",
    "estimate_plan",
    "extend_plan",
    "leaf_window",
    "parse_leaf_key",
    "plan_study",
    "plan_windows",
    "split_window",
    "sub_key",
]
