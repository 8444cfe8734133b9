"""Which store holds a study's state: a SQLite file (the default) or a PostgreSQL database."""

from __future__ import annotations

from pathlib import Path

from harvester.state.base import StateStore
from harvester.state.sqlite import SqliteState

__all__ = ["open_store", "store_location"]


def open_store(
    study: str,
    *,
    path: Path,
    url: str | None = None,
    daily_requests: int | None = None,
    daily_records: int | None = None,
    pool: str | None = None,
    share: float | None = None,
    lease_seconds: float = 60.0,
    existing: bool = False,
) -> StateStore | None:
    """Open the study's state at `url` (PostgreSQL) or `path` (SQLite). With `existing`, None
    when the study was never started there (and nothing is created)."""
    if url is None:
        if existing and not path.exists():
            return None
        return SqliteState(path, daily_requests=daily_requests, daily_records=daily_records)
    # Imported here: psycopg is optional and `status` on a SQLite study must start fast.
    from harvester.state.postgres import PostgresState

    store = PostgresState(
        url,
        study=study,
        daily_requests=daily_requests,
        daily_records=daily_records,
        pool=pool,
        share=share,
        lease_seconds=lease_seconds,
    )
    if existing and not store.started():
        store.close()
        return None
    return store


def store_location(path: Path, url: str | None) -> str:
    """Where the state is, for messages (never a password: URLs with one are refused)."""
    if url is None:
        return str(path)
    from harvester.state.postgres import describe_url

    return describe_url(url)
