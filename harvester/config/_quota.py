"""The daily quota: its defaults by stage, the test stage's cap, and the lab's shared pool."""

from __future__ import annotations

from harvester.config._schema import Problem, StudyFile
from harvester.config._study import QuotaSettings
from harvester.query import Stage

#: Default daily record quota: the seed caps the RQS Test Stage at 5,000 records a day.
QUOTA_RECORDS: dict[Stage, int] = {"test": 5_000, "execution": 100_000}


def daily_records(model: StudyFile) -> int:
    """The day's record quota: as given, or the stage's; never above the test stage's cap."""
    s = model.study
    # The public API has no test stage: a research-api study is always at execution.
    stage: Stage = "execution" if s.source == "research-api" else s.stage
    given = model.quota.daily_records
    day_cap = QUOTA_RECORDS["test"]
    if stage == "test" and given is not None and given > day_cap:
        raise Problem(
            "quota.daily_records",
            f"{given:,} is more than the test stage's {day_cap:,} a day",
            f"use at most {day_cap}",
        )
    return given or QUOTA_RECORDS[stage]


def quota_settings(model: StudyFile, records: int, state_url: str | None) -> QuotaSettings:
    """The quota as resolved; a pool is a ledger shared through PostgreSQL."""
    q = model.quota
    if q.pool is not None and state_url is None:
        raise Problem(
            "quota.pool",
            "a pool is shared through PostgreSQL",
            'set [state] url = "postgresql://user@host:5432/db" or remove pool',
        )
    if q.share is not None and q.pool is None:
        raise Problem("quota.share", "is a share of a pool", 'name the pool: pool = "our-lab"')
    return QuotaSettings(
        daily_requests=q.daily_requests,
        daily_records=records,
        on_exhausted=q.on_exhausted,
        pool=q.pool,
        share=q.share,
        window_fraction=q.window_fraction,
    )
