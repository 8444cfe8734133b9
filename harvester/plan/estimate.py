"""What a plan will cost — requests, records, days of quota — without asking the API anything.

The only inputs are the plan, the study and, when a run has already finished some shards, what
those shards cost. The record rate comes from, in order of preference:

1. *observed*: records per day of window over the finished shards (and their requests per day
   of window, which carry the real overhead of retries, empty pages and splits);
2. *configured*: `[study] expected_records_per_day`;
3. *prior*: `PRIOR_RECORDS_PER_DAY`, a deliberately round guess for a topical query (a hashtag
   or keyword in one region). Broad queries match orders of magnitude more: set the key.

Cost model (each window is costed on its expected records `n`):
- public API: `ceil(n / 100)` pages of 100, and one request for an empty window;
- RQS: one `create` plus `max(1, ceil(n / 10_000))` result pages per task; a task whose window
  holds more than `limit` records saturates and is split in halves until the halves fit, so a
  window needing `k` levels of splits runs `2**k - 1` saturated tasks (each assumed to cost its
  create and one result page of `min(limit, 10_000)` records) and `2**k` leaf tasks.
Status polls and cancels are not counted: the quota does not count them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from harvester.plan.shards import Plan

if TYPE_CHECKING:
    from harvester.config import Study

__all__ = [
    "PRIOR_RECORDS_PER_DAY",
    "REST_PAGE",
    "RQS_PAGE",
    "Estimate",
    "FinishedShard",
    "estimate_plan",
]

#: Guess used when nothing better is known; see the module docstring.
PRIOR_RECORDS_PER_DAY = 1_000
#: Largest public-API page (`max_count`).
REST_PAGE = 100
#: Largest RQS result page (`max_count`).
RQS_PAGE = 10_000

Basis = Literal["observed", "configured", "prior"]


@dataclass(frozen=True, slots=True)
class FinishedShard:
    """What state knows of one finished plan shard: all of its leaves together."""

    key: str
    records: int
    requests: int


@dataclass(frozen=True, slots=True)
class Estimate:
    """The cost of the shards still to do (all of them on a fresh plan)."""

    shards: int
    shards_done: int
    basis: Basis
    records_per_day: float
    requests: int
    records: int
    tasks: int
    splits: int
    quota_days: float

    @property
    def shards_left(self) -> int:
        return self.shards - self.shards_done


@dataclass(frozen=True, slots=True)
class _Cost:
    requests: int = 0
    records: int = 0
    tasks: int = 0
    splits: int = 0


def _rest_cost(n: float) -> _Cost:
    return _Cost(requests=max(1, math.ceil(n / REST_PAGE)), records=round(n))


def _rqs_cost(n: float, limit: int, seconds: int) -> _Cost:
    if n <= limit:
        return _Cost(requests=1 + max(1, math.ceil(n / RQS_PAGE)), records=round(n), tasks=1)
    if seconds < 2:
        # A saturated one-second task cannot be split: it yields `limit` records.
        return _Cost(requests=1 + math.ceil(limit / RQS_PAGE), records=limit, tasks=1)
    # Levels of halving until a leaf holds at most `limit`, but never below one second.
    levels = min(math.ceil(math.log2(n / limit)), max(0, seconds.bit_length() - 1))
    leaves = 1 << levels
    saturated = leaves - 1
    leaf = _rqs_cost(n / leaves, limit, seconds // leaves)
    return _Cost(
        requests=saturated * 2 + leaves * leaf.requests,
        records=saturated * min(limit, RQS_PAGE) + leaves * leaf.records,
        tasks=saturated + leaves,
        splits=saturated,
    )


def estimate_plan(plan: Plan, study: Study, finished: Iterable[FinishedShard] = ()) -> Estimate:
    """Estimate the plan's remaining cost; `finished` may come from a state summary.

    Finished shards whose key is not in the plan (the plan changed) are ignored.
    """
    by_key = {s.key: s.window for s in plan.shards}
    done: set[str] = set()
    seen_days = 0.0
    seen_records = 0
    seen_requests = 0
    for shard in finished:
        window = by_key.get(shard.key)
        if window is None or shard.key in done:
            continue
        done.add(shard.key)
        seen_days += window.days
        seen_records += shard.records
        seen_requests += shard.requests

    basis: Basis
    if done and seen_days > 0:
        basis, rate = "observed", seen_records / seen_days
    elif study.expected_records_per_day is not None:
        basis, rate = "configured", float(study.expected_records_per_day)
    else:
        basis, rate = "prior", float(PRIOR_RECORDS_PER_DAY)

    # Windows of a plan come in very few lengths: cost each length once.
    lengths = Counter(s.window.seconds for s in plan.shards if s.key not in done)
    requests = records = tasks = splits = 0
    for seconds, count in lengths.items():
        n = rate * seconds / 86_400
        if study.source == "research-api":
            cost = _rest_cost(n)
        else:
            cost = _rqs_cost(n, study.limit or RQS_PAGE, seconds)
        if basis == "observed":
            # Observed requests per day of window already include retries and splits.
            cost = _Cost(
                requests=max(1, math.ceil(seen_requests / seen_days * seconds / 86_400)),
                records=cost.records,
                tasks=cost.tasks,
                splits=cost.splits,
            )
        requests += cost.requests * count
        records += cost.records * count
        tasks += cost.tasks * count
        splits += cost.splits * count

    quota_days = max(
        requests / study.quota.daily_requests,
        records / study.quota.daily_records,
    )
    return Estimate(
        shards=len(plan.shards),
        shards_done=len(done),
        basis=basis,
        records_per_day=rate,
        requests=requests,
        records=records,
        tasks=tasks,
        splits=splits,
        quota_days=quota_days,
    )
