"""`SqliteState`: one SQLite file per study, in WAL mode, every operation one transaction.

One runner per file (`RunLock`, an OS file lock): it is always alone, finalizes and compacts
with nobody to race, and its queue holds every leaf, so it never leases, claims or heartbeats.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from harvester._exceptions import StudyChangedError
from harvester.state._core import SqliteFile
from harvester.state._ledger import Ledger, utc_day
from harvester.state._lock import RunLock
from harvester.state._schema import SCHEMA_VERSION, upgrade
from harvester.state._sql import Tx
from harvester.state._store import SqlStore
from harvester.state.base import ShardRecord
from harvester.state.enrich import EnrichState

__all__ = ["SqliteState", "utc_day"]


class SqliteState(SqliteFile, SqlStore):
    """The state of one study (see `StateStore`). Safe to share between threads."""

    #: A file holds one study: its rows carry the empty study key, its ledger is unnamed.
    scope = ""
    worker = ""

    def __init__(
        self,
        path: Path | str,
        *,
        daily_requests: int | None = None,
        daily_records: int | None = None,
    ) -> None:
        path = Path(path)
        self._lock = RunLock(path.with_name(path.name + ".lock"))
        self.quota = Ledger(self, "", daily_requests=daily_requests, daily_records=daily_records)
        self._connect(path, "state", SCHEMA_VERSION, upgrade)

    @property
    def study(self) -> str:
        with self._read() as tx:
            row = tx.execute("SELECT value FROM meta WHERE key = 'study'").fetchone()
        return str(row[0]) if row else self.path.stem

    def _record_name(self, tx: Tx, study: str) -> None:
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('study', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (study,),
        )

    def enrichments(self, *, daily_requests: int, daily_records: int) -> EnrichState:
        """As every store's, having first taken in the file an older harvester kept the
        enrichments' progress in, beside this one."""
        es = super().enrichments(daily_requests=daily_requests, daily_records=daily_records)
        es.import_file(self.path.with_name(self.path.name + ".enrich.sqlite"))
        return es

    def _changed(self) -> StudyChangedError:
        return StudyChangedError(
            f"the study changed since {self.path} was planned (query, fields or dates); "
            "pass --replan to start over, or use a new state path"
        )

    # -- the single runner ---------------------------------------------------------------------

    def lock(self) -> None:
        """Take the run lock for this study (StateError while another live run holds it)."""
        self._lock.acquire(self.study)

    @property
    def alone(self) -> bool:
        return True

    def open_to_others(self) -> None:
        return None

    def take_alone(self) -> bool:
        return True  # the single-runner lock: no other run is ever at work

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        yield True

    def heartbeat(self) -> list[str]:
        return []

    def claim_leaf(self) -> ShardRecord | None:
        return None

    def start_leaf(self, key: str) -> ShardRecord:
        """pending → running; returns the leaf with its cursor to resume from."""
        with self._tx() as tx:
            self._move(tx, key, ("pending",), "running")
            tx.execute(
                "UPDATE shards SET started_at = coalesce(started_at, updated_at) "
                "WHERE study = ? AND key = ?",
                (self.scope, key),
            )
            return self._get(tx, key)

    def reset_running(self) -> int:
        """At start-up: leaves a dead run left running become pending, cursors kept."""
        with self._tx() as tx:
            return tx.execute(
                "UPDATE shards SET status = 'pending', updated_at = ? "
                "WHERE study = ? AND status = 'running'",
                (time.time(), self.scope),
            ).rowcount

    def close(self) -> None:
        with self._mutex:
            self._lock.release()
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
