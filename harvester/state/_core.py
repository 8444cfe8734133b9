"""Plumbing of `SqliteState`: connection, transactions, schema, the study and the run lock."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from harvester._exceptions import StateError, StudyChangedError
from harvester.state._lock import RunLock
from harvester.state._schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION
from harvester.state.base import ShardRecord, Status

__all__ = ["SHARD_COLS", "Core", "SqliteFile", "utc_day"]

SHARD_COLS = (
    "key, parent_key, plan_key, start_ts, end_ts, status, task_id, search_id, next_cursor, "
    "attempts, last_error, error_kind, records, pages, updated_at, committed_at, filtered, "
    "started_at"
)


def utc_day(ts: float | None = None) -> str:
    """The quota ledger's day: `YYYY-MM-DD` in UTC (quotas reset at 00:00 UTC)."""
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC).strftime("%Y-%m-%d")


class SqliteFile:
    """One SQLite file's write transactions and reads under a mutex; shared by the study's
    state and the enrichment state, which open their own files with their own schemas."""

    path: Path
    _mutex: threading.RLock
    _db: sqlite3.Connection

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it commits, or none of it (any exception rolls back)."""
        with self._mutex:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise StateError(f"state {self.path} is unavailable: {e}") from e
            try:
                yield self._db
            except BaseException as e:
                self._db.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    raise StateError(f"state transaction failed: {e}") from e
                raise
            else:
                self._db.execute("COMMIT")

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._mutex:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as e:
                raise StateError(f"cannot read state {self.path}: {e}") from e


class Core(SqliteFile):
    """Connection and transactions; the operations live in the subclasses."""

    def __init__(
        self,
        path: Path | str,
        *,
        daily_requests: int | None = None,
        daily_records: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.daily_requests = daily_requests
        self.daily_records = daily_records
        self._mutex = threading.RLock()
        self._lock = RunLock(self.path.with_name(self.path.name + ".lock"))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            self._enable_wal()
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except (sqlite3.Error, OSError) as e:
            raise StateError(f"cannot open state {self.path}: {e}") from e

    # -- plumbing ------------------------------------------------------------------------------

    def _enable_wal(self) -> None:
        # Switching a new file to WAL takes an exclusive lock and SQLite answers "database is
        # locked" at once, without its busy timeout, when another process (a `status` beside a
        # starting run) is opening the same file: try again for a few seconds.
        for attempt in range(100):
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or attempt == 99:
                    raise
                time.sleep(0.05)

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state {self.path} was written by a newer harvester (schema {version}); upgrade"
            )
        if version == SCHEMA_VERSION:
            return
        with self._tx() as db:
            # Read again under the write lock: another process (a run, a `status` beside it)
            # may have created or migrated the schema since the first read.
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version == 0:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
            else:
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[step]:
                        db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    @staticmethod
    def _shard(row: Sequence[Any]) -> ShardRecord:
        return ShardRecord(*row)

    def _get(self, db: sqlite3.Connection, key: str) -> ShardRecord:
        row = db.execute(f"SELECT {SHARD_COLS} FROM shards WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise StateError(f"unknown shard {key!r}")
        return self._shard(row)

    def _move(self, db: sqlite3.Connection, key: str, frm: tuple[Status, ...], to: Status) -> None:
        shard = self._get(db, key)
        if shard.status not in frm:
            raise StateError(f"shard {key} is {shard.status}, not {' or '.join(frm)}")
        db.execute(
            "UPDATE shards SET status = ?, updated_at = ? WHERE key = ?", (to, time.time(), key)
        )

    # -- study and lock ------------------------------------------------------------------------

    def open_study(
        self, study: str, fingerprint: str, version: str, *, replan: bool = False
    ) -> None:
        """Record the study on first use; refuse a changed study unless `replan` (which forgets
        every shard, segment and file, but keeps the quota ledger: that use was real)."""
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
            if row is not None and row[0] != fingerprint and not replan:
                raise StudyChangedError(
                    f"the study changed since {self.path} was planned (query, fields or dates); "
                    "pass --replan to start over, or use a new state path"
                )
            if row is not None and row[0] != fingerprint:
                for table in (
                    "compactions",
                    "files",
                    "segments",
                    "errors",
                    "error_hours",
                    "window_harvests",
                    "restarts",
                ):
                    db.execute(f"DELETE FROM {table}")
                db.execute("UPDATE shards SET parent_key = NULL")
                db.execute("DELETE FROM shards")
            db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [("study", study), ("fingerprint", fingerprint), ("version", version)],
            )
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('created_at', ?) ON CONFLICT DO NOTHING",
                (repr(time.time()),),
            )

    @property
    def study(self) -> str:
        return self._meta("study") or self.path.stem

    def lock(self) -> None:
        """Take the run lock for this study (StateError while another live run holds it)."""
        self._lock.acquire(self.study)

    # One runner per SQLite study (the flock above): it is always alone, finalizes and compacts
    # with nobody to race, and its queue holds every leaf (nothing to claim or to heartbeat).

    @property
    def alone(self) -> bool:
        return True

    def open_to_others(self) -> None:
        return None

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        yield True

    def heartbeat(self) -> list[str]:
        return []

    def claim_leaf(self) -> ShardRecord | None:
        return None

    def close(self) -> None:
        with self._mutex:
            self._lock.release()
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
