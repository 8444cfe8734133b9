"""`PostgresState`: a study's state in PostgreSQL, shared by every worker of a lab.

The same operations as `SqliteState` (the same SQL, `SqlStore`), each one short transaction
through a psycopg connection pool, over tables keyed by study (one database holds a lab's
studies and their shared quota ledger). Differences a user can see:

- Leaves are leased: a worker that starts a leaf owns it until its lease (database clock)
  runs out; checkpoints, heartbeats and `mark_done` extend it and refuse a worker that lost it,
  so a worker presumed dead can never write after another took its leaf over.
- The run lock is a PostgreSQL advisory lock, released by the server when the holder's
  connection goes (a SIGKILLed process, a lost machine): nothing ever needs clearing by hand.
- Quota: a study's ledger is `study:<name>`; studies naming a pool share `pool:<name>`, and a
  share caps one study's part of the pool's day. Reservations lock the ledger row
  (`SELECT ... FOR UPDATE`), so no two workers interleave a check and an increment.

The password never comes from the URL (refused): libpq reads `PGPASSWORD` or `~/.pgpass`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Self

import structlog

from harvester._exceptions import StateError, StudyChangedError
from harvester.state._ledger import Ledger
from harvester.state._schema import SCHEMA_VERSION, upgrade
from harvester.state._sql import POSTGRES, Tx
from harvester.state._store import SHARD_COLS, SqlStore
from harvester.state.base import LeaseHeld, LeaseLost, ShardRecord

try:
    import psycopg
    from psycopg import conninfo as _conninfo
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError:  # pragma: no cover - the optional dependency is missing
    psycopg = None  # type: ignore[assignment]

log = structlog.get_logger("harvester.state")

__all__ = ["PG_SCHEMA", "LeaseHeld", "LeaseLost", "PostgresState", "describe_url", "worker_name"]

#: The tables live in a schema of their own, so the database can serve other purposes too.
PG_SCHEMA = "harvester"
#: The database's clock, so leases of workers on different machines compare on one clock.
DB_NOW = POSTGRES.now
#: A leaf's lease lasts this long unless renewed (checkpoints and heartbeats renew it).
LEASE_SECONDS = 60.0
#: How long a worker waits to join a study another worker is starting up (or replanning).
JOIN_WAIT = 120.0
#: Serialises schema creation and migrations between processes opening a fresh database.
_MIGRATE_LOCK = 0x6861727665737472  # "harvestr"


@dataclass(frozen=True, slots=True)
class _Where:
    user: str
    host: str
    port: str
    dbname: str

    def __str__(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"


def describe_url(url: str) -> str:
    """The URL as messages show it: user, host, port and database, never a password."""
    return str(_where(url))


def _where(url: str) -> _Where:
    try:
        d = _conninfo.conninfo_to_dict(url)
    except psycopg.Error as e:
        raise StateError(f"state url is not a PostgreSQL URL: {_line(e)}") from None
    if d.get("password"):
        raise StateError(
            "state url carries a password; remove it and set PGPASSWORD or ~/.pgpass instead"
        )
    return _Where(
        str(d.get("user") or os.environ.get("PGUSER") or ""),
        str(d.get("host") or os.environ.get("PGHOST") or "localhost"),
        str(d.get("port") or os.environ.get("PGPORT") or "5432"),
        str(d.get("dbname") or os.environ.get("PGDATABASE") or ""),
    )


def _line(e: BaseException) -> str:
    """psycopg's messages can span lines (DETAIL, HINT): the first says what happened."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def worker_name() -> str:
    """Who holds a lease or used quota: `HARVESTER_WORKER` (unique per process), or
    `<host>:<pid>-<token>` (the token tells apart two stores of one process, as in tests)."""
    return (
        os.environ.get("HARVESTER_WORKER")
        or f"{socket.gethostname()}:{os.getpid()}-{uuid.uuid4().hex[:4]}"
    )


def _lock_key(*parts: str) -> int:
    """A signed 64-bit advisory lock key for `parts` (stable across processes)."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresState(SqlStore):
    """The state of one study in a PostgreSQL database (see `StateStore`). Thread-safe."""

    def __init__(
        self,
        url: str,
        *,
        study: str,
        daily_requests: int | None = None,
        daily_records: int | None = None,
        pool: str | None = None,
        share: float | None = None,
        worker: str | None = None,
        lease_seconds: float = LEASE_SECONDS,
        max_connections: int = 4,
        join_wait: float = JOIN_WAIT,
    ) -> None:
        if psycopg is None:  # pragma: no cover
            raise StateError(
                "[state] url needs PostgreSQL support: pip install 'harvester[postgres]'"
            )
        self.url = url
        self.where = _where(url)
        self.scope = study
        self.quota = Ledger(
            self,
            f"pool:{pool}" if pool else f"study:{study}",
            daily_requests=daily_requests,
            daily_records=daily_records,
            share=share,
        )
        self.worker = worker or worker_name()
        self.lease_seconds = lease_seconds
        self.join_wait = join_wait
        self._kwargs: dict[str, Any] = {
            "options": f"-c search_path={PG_SCHEMA}",
            "application_name": f"harvester {study}"[:63],
            "connect_timeout": 10,
        }
        self._mutex = threading.Lock()
        self._lock_conn: psycopg.Connection[Any] | None = None
        self._exclusive = False
        #: Leaves `claim_leaf` leased to this worker that `start_leaf` has not taken up yet.
        self._claimed: dict[str, bool] = {}
        self._migrate()
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            kwargs=self._kwargs,
            open=False,
            name=f"harvester-{study}",
        )
        try:
            self._pool.open(wait=True, timeout=15)
        except PoolTimeout as e:
            self._pool.close()
            raise StateError(f"cannot connect to PostgreSQL at {self.where}: {_line(e)}") from None

    # -- plumbing ------------------------------------------------------------------------------

    def _connect(self, *, autocommit: bool = False) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.url, autocommit=autocommit, **self._kwargs)
        except psycopg.Error as e:
            raise StateError(
                f"cannot connect to PostgreSQL at {self.where}: {_line(e)}; check [state] url, "
                "that the server runs and PGPASSWORD or ~/.pgpass"
            ) from None

    def _migrate(self) -> None:
        with self._connect() as conn:
            try:
                tx = Tx(conn.cursor(), POSTGRES)
                # One migrator at a time; the lock goes with the transaction.
                tx.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATE_LOCK,))
                tx.execute(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}")
                tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                (version,) = tx.one("SELECT coalesce(max(version), 0) FROM schema_version")
                if version > SCHEMA_VERSION:
                    raise StateError(
                        f"state at {self.where} was written by a newer harvester (schema "
                        f"{version}); upgrade harvester"
                    )
                if version < SCHEMA_VERSION:
                    upgrade(tx, int(version))
                    tx.execute("DELETE FROM schema_version")
                    tx.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                conn.commit()
            except psycopg.Error as e:
                raise StateError(
                    f"cannot create the state schema at {self.where}: {_line(e)}"
                ) from None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Tx]:
        """One transaction: all of it commits, or none of it (any exception rolls back)."""
        try:
            with self._pool.connection() as conn, conn.cursor() as cur:
                yield Tx(cur, POSTGRES)
        except (psycopg.Error, PoolTimeout) as e:
            raise StateError(f"state transaction failed at {self.where}: {_line(e)}") from None

    _read = _tx

    def _check_lease(self, tx: Tx, key: str) -> None:
        (owner,) = tx.one(
            "SELECT lease_owner FROM shards WHERE study = ? AND key = ?", (self.scope, key)
        )
        if owner is not None and owner != self.worker:
            raise LeaseLost(f"leaf {key} was taken over by worker {owner}")

    def _renew(self, tx: Tx, key: str) -> None:
        tx.execute(
            f"UPDATE shards SET lease_until = {DB_NOW} + ? WHERE study = ? AND key = ?",
            (self.lease_seconds, self.scope, key),
        )

    # -- study and lock ------------------------------------------------------------------------

    @property
    def study(self) -> str:
        return self.scope

    def started(self) -> bool:
        """Whether the study was ever opened in this database."""
        return bool(self._query("SELECT 1 FROM studies WHERE study = ?", (self.scope,)))

    def open_study(
        self, study: str, fingerprint: str, version: str, *, replan: bool = False
    ) -> None:
        if study != self.scope:
            raise StateError(f"this state is opened for study {self.scope!r}, not {study!r}")
        super().open_study(study, fingerprint, version, replan=replan)

    def _changed(self) -> StudyChangedError:
        return StudyChangedError(
            f"the study changed since it was planned in {self.where} (query, fields or "
            "dates); pass --replan to start over, or name the study differently"
        )

    def _may_replan(self) -> None:
        if self._lock_conn is not None and not self._exclusive:
            raise StateError(
                f"other workers are harvesting study '{self.scope}'; stop them before --replan"
            )

    def lock(self) -> None:
        """Join the study's workers. The first one alone takes the run lock exclusively (so its
        start-up may recover from any earlier crash: reset every running leaf, sweep files the
        state does not know) until `open_to_others`; later ones share it. An advisory lock on a
        connection of its own: the server drops it when the holder's connection goes (a
        SIGKILLed worker, a lost machine), so nothing ever needs clearing by hand."""
        if self._lock_conn is not None:
            return
        conn = self._connect(autocommit=True)
        key = _lock_key("run", self.scope)
        try:
            deadline = time.monotonic() + self.join_wait
            while True:
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
                if row and row[0]:
                    self._exclusive = True
                    break
                # Another worker is in its start-up, or at work: share the lock with it.
                row = conn.execute("SELECT pg_try_advisory_lock_shared(%s)", (key,)).fetchone()
                if row and row[0]:
                    break
                if time.monotonic() > deadline:
                    raise StateError(
                        f"study '{self.scope}' stays locked by another worker's start-up or "
                        "--replan; wait for it or stop it"
                    )
                time.sleep(0.2)
        except psycopg.Error as e:
            conn.close()
            raise StateError(f"cannot lock study at {self.where}: {_line(e)}") from None
        except BaseException:
            conn.close()
            raise
        self._lock_conn = conn

    @property
    def alone(self) -> bool:
        """Whether this worker holds the study exclusively (no other worker can be running)."""
        return self._exclusive

    def open_to_others(self) -> None:
        """Start-up is over: let other workers join (the exclusive lock becomes a shared one)."""
        if self._lock_conn is None or not self._exclusive:
            return
        key = _lock_key("run", self.scope)
        try:
            self._lock_conn.execute("SELECT pg_advisory_lock_shared(%s)", (key,))
            self._lock_conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        except psycopg.Error as e:
            raise StateError(f"cannot share the study's lock at {self.where}: {_line(e)}") from None
        self._exclusive = False

    def take_alone(self) -> bool:
        if self._lock_conn is None:
            return False
        if self._exclusive:
            return True
        key = _lock_key("run", self.scope)
        try:
            # Granted while this session holds the lock shared, as long as no other does.
            row = self._lock_conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        except psycopg.Error as e:
            raise StateError(f"cannot lock study at {self.where}: {_line(e)}") from None
        self._exclusive = bool(row and row[0])
        return self._exclusive

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Whether this worker may do `name` (finalize a plan shard, compact a partition) now:
        False while another worker does it. Held until the block ends."""
        conn = self._lock_conn
        if conn is None:
            yield True
            return
        key = _lock_key("job", self.scope, name)
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        except psycopg.Error as e:
            raise StateError(f"cannot lock {name} at {self.where}: {_line(e)}") from None
        if not row or not row[0]:
            yield False
            return
        try:
            yield True
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def close(self) -> None:
        with self._mutex:
            if self._lock_conn is not None:
                self._lock_conn.close()
                self._lock_conn = None
            self._pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- leases ------------------------------------------------------------------------------

    def start_leaf(self, key: str) -> ShardRecord:
        """pending → running under this worker's lease; a running leaf whose lease ran out
        (its worker died) is taken over. Returns the leaf with its cursor to resume from."""
        with self._tx() as tx:
            shard = self._get(tx, key, lock=True)
            if shard.status == "running":
                expired, owner = tx.one(
                    f"SELECT lease_until IS NULL OR lease_until < {DB_NOW}, lease_owner "
                    "FROM shards WHERE study = ? AND key = ?",
                    (self.scope, key),
                )
                if not expired and owner != self.worker:
                    raise LeaseHeld(f"shard {key} is running under worker {owner}")
                if not expired and not self._claimed.pop(key, False):
                    raise StateError(f"shard {key} is running, not pending")
                if expired:
                    log.warning(
                        "leaf_taken_over", leaf=key, previous_worker=owner, pages=shard.pages
                    )
            elif shard.status != "pending":
                # Listed pending when this worker started, since then done, split or parked by
                # another worker: not this worker's to run.
                raise LeaseHeld(f"shard {key} is {shard.status}, not pending")
            now = time.time()
            tx.execute(
                "UPDATE shards SET status = 'running', lease_owner = ?, "
                f"lease_until = {DB_NOW} + ?, updated_at = ?, "
                "started_at = coalesce(started_at, ?) WHERE study = ? AND key = ?",
                (self.worker, self.lease_seconds, now, now, self.scope, key),
            )
            return self._get(tx, key)

    def claim_leaf(self) -> ShardRecord | None:
        """Lease the first pending leaf (or one whose lease ran out) that no other worker is
        claiming at this instant: `FOR UPDATE SKIP LOCKED` never waits on another claim."""
        now = time.time()
        with self._tx() as tx:
            row = tx.execute(
                "WITH free AS ("
                "  SELECT key, status AS was, lease_owner AS holder FROM shards "
                "  WHERE study = ? AND (status = 'pending' OR (status = 'running' AND "
                f"  (lease_until IS NULL OR lease_until < {DB_NOW}))) "
                "  ORDER BY start_ts, end_ts DESC LIMIT 1 FOR UPDATE SKIP LOCKED) "
                "UPDATE shards s SET status = 'running', lease_owner = ?, "
                f"lease_until = {DB_NOW} + ?, updated_at = ?, "
                "started_at = coalesce(s.started_at, ?) FROM free "
                "WHERE s.study = ? AND s.key = free.key "
                f"RETURNING {', '.join('s.' + c.strip() for c in SHARD_COLS.split(','))}, "
                "free.was, free.holder",
                (self.scope, self.worker, self.lease_seconds, now, now, self.scope),
            ).fetchone()
        if row is None:
            return None
        leaf = ShardRecord(*row[:-2])
        if row[-2] == "running":
            log.warning("leaf_taken_over", leaf=leaf.key, previous_worker=row[-1], pages=leaf.pages)
        self._claimed[leaf.key] = True
        return leaf

    def heartbeat(self) -> list[str]:
        """Renew the lease of every leaf this worker runs; returns their keys."""
        rows = self._query(
            f"UPDATE shards SET lease_until = {DB_NOW} + ? "
            "WHERE study = ? AND status = 'running' AND lease_owner = ? RETURNING key",
            (self.lease_seconds, self.scope, self.worker),
        )
        return sorted(r[0] for r in rows)

    def reset_running(self) -> int:
        """At start-up: leaves a dead run left running become pending, cursors kept. Under the
        exclusive run lock every running leaf is a dead run's; otherwise only those whose
        lease ran out are."""
        stale = "TRUE" if self._exclusive else f"(lease_until IS NULL OR lease_until < {DB_NOW})"
        rows = self._query(
            "WITH stale AS (SELECT key, lease_owner AS holder FROM shards "
            f"  WHERE study = ? AND status = 'running' AND {stale} FOR UPDATE SKIP LOCKED) "
            "UPDATE shards s SET status = 'pending', lease_owner = NULL, lease_until = NULL, "
            "updated_at = ? FROM stale WHERE s.study = ? AND s.key = stale.key "
            "RETURNING s.key, stale.holder, s.pages",
            (self.scope, time.time(), self.scope),
        )
        for key, holder, pages in rows:
            log.warning("leaf_taken_over", leaf=key, previous_worker=holder, pages=pages)
        return len(rows)
