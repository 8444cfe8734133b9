"""One SQLite file: its connection, write transactions, reads and schema version.

Shared by the study's state and the enrichment state, which open their own files with their
own schemas. `synchronous=FULL`: each commit waits for one fsync of the WAL. A page costs a
network round trip of a second or so, so the millisecond is cheap, and it means a committed
checkpoint (and the segment it names, fsynced before) survives a power cut, not only a process
crash. Write transactions start with `BEGIN IMMEDIATE` so two processes (a run and `harvester
status`, or two runs sharing a quota ledger) queue on the write lock instead of failing
mid-transaction.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from harvester._exceptions import StateError
from harvester.state._sql import SQLITE, Reader, Tx

__all__ = ["SqliteFile"]


class SqliteFile(Reader):
    """A SQLite file shared between threads under a mutex (one connection, one writer)."""

    dialect = SQLITE
    path: Path
    _mutex: threading.RLock
    _db: sqlite3.Connection

    def _connect(
        self, path: Path | str, what: str, version: int, upgrade: Callable[[Tx, int], None]
    ) -> None:
        """Open the file (created if new) and bring its schema to `version`: `upgrade(tx, v)`
        migrates it from version `v` (0: an empty file)."""
        self.path = Path(path)
        self._mutex = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            self._enable_wal()
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate(what, version, upgrade)
        except (sqlite3.Error, OSError) as e:
            raise StateError(f"cannot open {what} {self.path}: {e}") from e

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

    def _version(self) -> int:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        return int(version)

    def _migrate(self, what: str, current: int, upgrade: Callable[[Tx, int], None]) -> None:
        version = self._version()
        if version > current:
            raise StateError(
                f"{what} {self.path} was written by a newer harvester (schema {version}); upgrade"
            )
        if version == current:
            return
        with self._tx() as tx:
            # Read again under the write lock: another process (a run, a `status` beside it)
            # may have created or migrated the schema since the first read.
            version = self._version()
            if version < current:
                upgrade(tx, version)
                self._db.execute(f"PRAGMA user_version={current}")

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Tx]:
        """One write transaction: all of it commits, or none of it (any exception rolls back)."""
        with self._mutex:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise StateError(f"state {self.path} is unavailable: {e}") from e
            try:
                yield Tx(self._db, SQLITE)
            except BaseException as e:
                self._db.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    raise StateError(f"state transaction failed: {e}") from e
                raise
            else:
                self._db.execute("COMMIT")

    @contextlib.contextmanager
    def _read(self) -> Iterator[Tx]:
        """Reads outside a write transaction (WAL: they never wait for a writer)."""
        with self._mutex:
            try:
                yield Tx(self._db, SQLITE)
            except sqlite3.Error as e:
                raise StateError(f"cannot read state {self.path}: {e}") from e

    def close(self) -> None:
        with self._mutex:
            self._db.close()
