"""A study's state, opened from its settings: the one place that maps a `Study` to where its
state lives (the SQLite file, or PostgreSQL with `[state] url`) and how it is shared (the quota
pool, the study's share of it, the lease of a worker's leaves).

The state layer knows nothing of configuration; the run, the status and plan reports and the
HTML report all open a study's state through here."""

from __future__ import annotations

from harvester.config import Study
from harvester.state import StateStore, open_store, store_location

__all__ = ["existing_state", "open_state", "state_location"]


def open_state(study: Study) -> StateStore:
    """The study's state to run it, created when new, with the study's daily quota."""
    store = open_store(
        study.name,
        path=study.state_path,
        url=study.state_url,
        daily_requests=study.quota.daily_requests,
        daily_records=study.quota.daily_records,
        pool=study.quota.pool,
        share=study.quota.share,
        lease_seconds=study.lease_s,
    )
    assert store is not None  # only an `existing` open finds nothing
    return store


def existing_state(study: Study, *, pooled: bool = False) -> StateStore | None:
    """The study's state if it was ever started (nothing is created), to read it; with
    `pooled`, a PostgreSQL state even if not (the pool's ledger is there whether this study
    ran or not)."""
    return open_store(
        study.name,
        path=study.state_path,
        url=study.state_url,
        pool=study.quota.pool,
        share=study.quota.share,
        existing=not (pooled and study.state_url is not None),
    )


def state_location(study: Study) -> str:
    """Where the study's state is, for messages (never a password)."""
    return store_location(study.state_path, study.state_url)
