"""`PostgresState`: a study's state in PostgreSQL, shared by every worker of a lab.

The same operations as `SqliteState`, each one short transaction through a psycopg connection
pool, over tables keyed by study (one database holds a lab's studies and their shared quota
ledger). Differences a user can see:

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
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Self

import structlog

from harvester._exceptions import StateError, StudyChangedError
from harvester.state._core import utc_day
from harvester.state._pgschema import MIGRATIONS, PG_SCHEMA, SCHEMA_VERSION
from harvester.state.base import (
    ErrorCount,
    FileLike,
    FileRecord,
    LeaseHeld,
    LeaseLost,
    PendingCompaction,
    PlannedShard,
    Restart,
    SegmentRecord,
    ShardRecord,
    Status,
    StatusSummary,
    Usage,
    WindowHarvest,
    WorkerUsage,
    check_children,
)

try:
    import psycopg
    from psycopg import conninfo as _conninfo
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError:  # pragma: no cover - the optional dependency is missing
    psycopg = None  # type: ignore[assignment]

log = structlog.get_logger("harvester.state")

__all__ = ["LeaseHeld", "LeaseLost", "PostgresState", "describe_url", "worker_name"]

SHARD_COLS = (
    "key, parent_key, plan_key, start_ts, end_ts, status, task_id, search_id, next_cursor, "
    "attempts, last_error, error_kind, records, pages, updated_at, committed_at, filtered, "
    "started_at"
)
#: The database's clock, so leases of workers on different machines compare on one clock.
DB_NOW = "extract(epoch from clock_timestamp())"
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


def _one(cur: psycopg.Cursor[Any], sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...]:
    """The one row an aggregate or a locked read always returns."""
    row = cur.execute(sql, args).fetchone()
    if row is None:
        raise StateError(f"the state database returned no row for: {sql.split()[0]}")
    return tuple(row)


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


class PostgresState:
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
        self._study = study
        self.daily_requests = daily_requests
        self.daily_records = daily_records
        self.pool_name = pool
        self.share = share
        self.ledger = f"pool:{pool}" if pool else f"study:{study}"
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
                cur = conn.cursor()
                # One migrator at a time; the lock goes with the transaction.
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
                cur.execute(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}")
                cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                row = cur.execute("SELECT max(version) FROM schema_version").fetchone()
                version = int(row[0]) if row and row[0] is not None else 0
                if version > SCHEMA_VERSION:
                    raise StateError(
                        f"state at {self.where} was written by a newer harvester (schema "
                        f"{version}); upgrade harvester"
                    )
                for n in range(version, SCHEMA_VERSION):
                    for statement in MIGRATIONS[n].split(";"):
                        if statement.strip():
                            cur.execute(statement)
                    cur.execute("DELETE FROM schema_version")
                    cur.execute("INSERT INTO schema_version VALUES (%s)", (n + 1,))
                conn.commit()
            except psycopg.Error as e:
                raise StateError(
                    f"cannot create the state schema at {self.where}: {_line(e)}"
                ) from None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor[Any]]:
        """One transaction: all of it commits, or none of it (any exception rolls back)."""
        try:
            with self._pool.connection() as conn, conn.cursor() as cur:
                yield cur
        except (psycopg.Error, PoolTimeout) as e:
            raise StateError(f"state transaction failed at {self.where}: {_line(e)}") from None

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._tx() as cur:
            return cur.execute(sql, args).fetchall()

    def _get(self, cur: psycopg.Cursor[Any], key: str, *, lock: bool = False) -> ShardRecord:
        row = cur.execute(
            f"SELECT {SHARD_COLS} FROM shards WHERE study = %s AND key = %s"
            + (" FOR UPDATE" if lock else ""),
            (self._study, key),
        ).fetchone()
        if row is None:
            raise StateError(f"unknown shard {key!r}")
        return ShardRecord(*row)

    def _move(
        self, cur: psycopg.Cursor[Any], key: str, frm: tuple[Status, ...], to: Status
    ) -> None:
        shard = self._get(cur, key, lock=True)
        if shard.status not in frm:
            raise StateError(f"shard {key} is {shard.status}, not {' or '.join(frm)}")
        if shard.status == "running":
            self._check_lease(cur, key)
        cur.execute(
            "UPDATE shards SET status = %s, lease_owner = NULL, lease_until = NULL, "
            "updated_at = %s WHERE study = %s AND key = %s",
            (to, time.time(), self._study, key),
        )

    def _check_lease(self, cur: psycopg.Cursor[Any], key: str) -> None:
        """Refuse a write to a running leaf this worker no longer holds."""
        (owner,) = _one(
            cur, "SELECT lease_owner FROM shards WHERE study = %s AND key = %s", (self._study, key)
        )
        if owner is not None and owner != self.worker:
            raise LeaseLost(f"leaf {key} was taken over by worker {owner}")

    # -- study and lock ------------------------------------------------------------------------

    @property
    def study(self) -> str:
        return self._study

    def started(self) -> bool:
        """Whether the study was ever opened in this database."""
        rows = self._query("SELECT 1 FROM studies WHERE study = %s", (self._study,))
        return bool(rows)

    def open_study(
        self, study: str, fingerprint: str, version: str, *, replan: bool = False
    ) -> None:
        """Record the study on first use; refuse a changed study unless `replan` (which forgets
        every shard, segment and file, but keeps the quota ledger: that use was real)."""
        if study != self._study:
            raise StateError(f"this state is opened for study {self._study!r}, not {study!r}")
        with self._tx() as cur:
            row = cur.execute(
                "SELECT fingerprint FROM studies WHERE study = %s FOR UPDATE", (study,)
            ).fetchone()
            if row is not None and row[0] != fingerprint and not replan:
                raise StudyChangedError(
                    f"the study changed since it was planned in {self.where} (query, fields or "
                    "dates); pass --replan to start over, or name the study differently"
                )
            if row is not None and row[0] != fingerprint:
                if self._lock_conn is not None and not self._exclusive:
                    raise StateError(
                        f"other workers are harvesting study '{study}'; stop them before --replan"
                    )
                for table in (
                    "compactions",
                    "files",
                    "segments",
                    "errors",
                    "error_hours",
                    "window_harvests",
                    "restarts",
                ):
                    cur.execute(f"DELETE FROM {table} WHERE study = %s", (study,))
                cur.execute("UPDATE shards SET parent_key = NULL WHERE study = %s", (study,))
                cur.execute("DELETE FROM shards WHERE study = %s", (study,))
            cur.execute(
                "INSERT INTO studies (study, fingerprint, version, created_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (study) DO UPDATE "
                "SET fingerprint = excluded.fingerprint, version = excluded.version",
                (study, fingerprint, version, time.time()),
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
        key = _lock_key("run", self._study)
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
                        f"study '{self._study}' stays locked by another worker's start-up or "
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
        key = _lock_key("run", self._study)
        try:
            self._lock_conn.execute("SELECT pg_advisory_lock_shared(%s)", (key,))
            self._lock_conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        except psycopg.Error as e:
            raise StateError(f"cannot share the study's lock at {self.where}: {_line(e)}") from None
        self._exclusive = False

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Whether this worker may do `name` (finalize a plan shard, compact a partition) now:
        False while another worker does it. Held until the block ends."""
        conn = self._lock_conn
        if conn is None:
            yield True
            return
        key = _lock_key("job", self._study, name)
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

    # -- shards --------------------------------------------------------------------------------

    def add_plan_shards(self, shards: Iterable[PlannedShard]) -> int:
        """Add plan shards; already present ones are left as they are. Returns how many were new.

        A key already planned with another window means the plan changed under the same
        fingerprint: refuse rather than mix two plans.
        """
        wanted = {s.key: s for s in shards}
        if not wanted:
            return 0
        now = time.time()
        with self._tx() as cur:
            existing = cur.execute(
                "SELECT key, start_ts, end_ts FROM shards WHERE study = %s AND key = ANY(%s)",
                (self._study, list(wanted)),
            ).fetchall()
            for key, start, end in existing:
                if (start, end) != (wanted[key].start, wanted[key].end):
                    raise StateError(f"shard {key} is already planned with another window")
            known = {r[0] for r in existing}
            new = [s for s in wanted.values() if s.key not in known]
            cur.executemany(
                "INSERT INTO shards (study, key, plan_key, start_ts, end_ts, status, updated_at) "
                "VALUES (%s, %s, %s, %s, %s, 'pending', %s)",
                [(self._study, s.key, s.key, s.start, s.end, now) for s in new],
            )
        return len(new)

    def split(self, key: str, children: Sequence[PlannedShard]) -> list[str]:
        """Replace leaf `key` by `children`, which must tile its window exactly; its staged
        segments are forgotten in the same transaction and their paths returned."""
        with self._tx() as cur:
            parent = self._get(cur, key, lock=True)
            if parent.status not in ("pending", "running", "parked"):
                raise StateError(f"cannot split shard {key}: it is {parent.status}")
            if parent.status == "running":
                self._check_lease(cur, key)
            ordered = check_children(parent, children)
            now = time.time()
            cur.executemany(
                "INSERT INTO shards (study, key, parent_key, plan_key, start_ts, end_ts, status, "
                "updated_at) VALUES (%s, %s, %s, %s, %s, %s, 'pending', %s)",
                [(self._study, c.key, key, parent.plan_key, c.start, c.end, now) for c in ordered],
            )
            dropped = [
                r[0]
                for r in cur.execute(
                    "DELETE FROM segments WHERE study = %s AND leaf_key = %s RETURNING path",
                    (self._study, key),
                ).fetchall()
            ]
            cur.execute(
                "UPDATE shards SET status = 'split', records = 0, filtered = 0, "
                "next_cursor = NULL, search_id = NULL, task_id = NULL, lease_owner = NULL, "
                "lease_until = NULL, updated_at = %s WHERE study = %s AND key = %s",
                (now, self._study, key),
            )
        return sorted(dropped)

    def shard(self, key: str) -> ShardRecord:
        with self._tx() as cur:
            return self._get(cur, key)

    def shards(
        self, status: Status | None = None, plan_key: str | None = None
    ) -> list[ShardRecord]:
        """Shards by window start, optionally only those with `status` / of one plan shard."""
        sql = f"SELECT {SHARD_COLS} FROM shards WHERE study = %s"
        args: list[Any] = [self._study]
        if status is not None:
            sql += " AND status = %s"
            args.append(status)
        if plan_key is not None:
            sql += " AND plan_key = %s"
            args.append(plan_key)
        rows = self._query(sql + " ORDER BY start_ts, end_ts DESC", args)
        return [ShardRecord(*r) for r in rows]

    def start_leaf(self, key: str) -> ShardRecord:
        """pending → running under this worker's lease; a running leaf whose lease ran out
        (its worker died) is taken over. Returns the leaf with its cursor to resume from."""
        with self._tx() as cur:
            shard = self._get(cur, key, lock=True)
            if shard.status == "running":
                expired, owner = _one(
                    cur,
                    f"SELECT lease_until IS NULL OR lease_until < {DB_NOW}, lease_owner "
                    "FROM shards WHERE study = %s AND key = %s",
                    (self._study, key),
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
            cur.execute(
                "UPDATE shards SET status = 'running', lease_owner = %s, "
                f"lease_until = {DB_NOW} + %s, updated_at = %s, "
                "started_at = coalesce(started_at, %s) WHERE study = %s AND key = %s",
                (self.worker, self.lease_seconds, now, now, self._study, key),
            )
            return self._get(cur, key)

    def claim_leaf(self) -> ShardRecord | None:
        """Lease the first pending leaf (or one whose lease ran out) that no other worker is
        claiming at this instant: `FOR UPDATE SKIP LOCKED` never waits on another claim."""
        now = time.time()
        with self._tx() as cur:
            row = cur.execute(
                "WITH free AS ("
                "  SELECT key, status AS was, lease_owner AS holder FROM shards "
                "  WHERE study = %s AND (status = 'pending' OR (status = 'running' AND "
                f"  (lease_until IS NULL OR lease_until < {DB_NOW}))) "
                "  ORDER BY start_ts, end_ts DESC LIMIT 1 FOR UPDATE SKIP LOCKED) "
                "UPDATE shards s SET status = 'running', lease_owner = %s, "
                f"lease_until = {DB_NOW} + %s, updated_at = %s, "
                "started_at = coalesce(s.started_at, %s) FROM free "
                "WHERE s.study = %s AND s.key = free.key "
                f"RETURNING {', '.join('s.' + c.strip() for c in SHARD_COLS.split(','))}, "
                "free.was, free.holder",
                (self._study, self.worker, self.lease_seconds, now, now, self._study),
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
            f"UPDATE shards SET lease_until = {DB_NOW} + %s "
            "WHERE study = %s AND status = 'running' AND lease_owner = %s RETURNING key",
            (self.lease_seconds, self._study, self.worker),
        )
        return sorted(r[0] for r in rows)

    def requeue_leaf(self, key: str) -> None:
        """running → pending for one leaf (to be tried again later), cursor kept."""
        with self._tx() as cur:
            self._move(cur, key, ("running",), "pending")

    def reset_running(self) -> int:
        """At start-up: leaves a dead run left running become pending, cursors kept. Under the
        exclusive run lock every running leaf is a dead run's; otherwise only those whose
        lease ran out are."""
        stale = "TRUE" if self._exclusive else f"(lease_until IS NULL OR lease_until < {DB_NOW})"
        rows = self._query(
            "WITH stale AS (SELECT key, lease_owner AS holder FROM shards "
            f"  WHERE study = %s AND status = 'running' AND {stale} FOR UPDATE SKIP LOCKED) "
            "UPDATE shards s SET status = 'pending', lease_owner = NULL, lease_until = NULL, "
            "updated_at = %s FROM stale WHERE s.study = %s AND s.key = stale.key "
            "RETURNING s.key, stale.holder, s.pages",
            (self._study, time.time(), self._study),
        )
        for key, holder, pages in rows:
            log.warning("leaf_taken_over", leaf=key, previous_worker=holder, pages=pages)
        return len(rows)

    def checkpoint_page(
        self,
        leaf_key: str,
        *,
        segment: str | None,
        rows: int,
        cursor: int | None,
        search_id: str | None = None,
        task_id: str | None = None,
        filtered: int = 0,
    ) -> None:
        """Record one fetched page: its staged segment (None when no row survived), the records
        the exact filter dropped from it and the leaf's new position, together; renews the
        lease. A failure leaves the leaf as before."""
        with self._tx() as cur:
            leaf = self._get(cur, leaf_key, lock=True)
            if leaf.status != "running":
                raise StateError(f"cannot checkpoint shard {leaf_key}: it is {leaf.status}")
            self._check_lease(cur, leaf_key)
            if segment is not None:
                cur.execute(
                    "INSERT INTO segments (study, path, leaf_key, plan_key, seq, rows) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    (self._study, segment, leaf_key, leaf.plan_key, leaf.pages, rows),
                )
            elif rows:
                raise StateError(f"page of {leaf_key} has {rows} rows but no segment")
            cur.execute(
                "UPDATE shards SET records = records + %s, filtered = filtered + %s, "
                "pages = pages + 1, next_cursor = %s, "
                "search_id = COALESCE(%s, search_id), task_id = COALESCE(%s, task_id), "
                f"updated_at = %s, lease_until = {DB_NOW} + %s WHERE study = %s AND key = %s",
                (
                    rows,
                    filtered,
                    cursor,
                    search_id,
                    task_id,
                    time.time(),
                    self.lease_seconds,
                    self._study,
                    leaf_key,
                ),
            )

    def restart_leaf(self, leaf_key: str, *, task_id: str | None = None) -> None:
        """Forget the leaf's search_id/cursor (or RQS task) to fetch its window from the start;
        staged pages stay and the seen-set drops what they already hold."""
        with self._tx() as cur:
            self._get(cur, leaf_key, lock=True)
            self._check_lease(cur, leaf_key)
            cur.execute(
                "UPDATE shards SET search_id = NULL, next_cursor = NULL, task_id = %s, "
                "updated_at = %s WHERE study = %s AND key = %s",
                (task_id, time.time(), self._study, leaf_key),
            )

    def record_restart(self, leaf_key: str, reason: str, day: str) -> int:
        """Note that the leaf restarted from cursor 0 for `reason` on UTC `day`; returns how
        many times it has restarted for that reason, this one included, on any day."""
        with self._tx() as cur:
            self._get(cur, leaf_key, lock=True)
            cur.execute(
                "INSERT INTO restarts (study, leaf_key, reason, day, count) "
                "VALUES (%s, %s, %s, %s, 1) ON CONFLICT (study, leaf_key, reason, day) "
                "DO UPDATE SET count = restarts.count + 1",
                (self._study, leaf_key, reason, day),
            )
            row = cur.execute(
                "SELECT sum(count) FROM restarts WHERE study = %s AND leaf_key = %s "
                "AND reason = %s",
                (self._study, leaf_key, reason),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def restarts(self) -> list[Restart]:
        with self._tx() as cur:
            rows = cur.execute(
                "SELECT leaf_key, reason, day, count FROM restarts WHERE study = %s "
                "ORDER BY leaf_key, day, reason",
                (self._study,),
            ).fetchall()
        return [Restart(str(k), str(r), str(d), int(c)) for k, r, d, c in rows]

    def mark_done(self, leaf_key: str) -> None:
        with self._tx() as cur:
            self._move(cur, leaf_key, ("running",), "done")

    def park(self, leaf_key: str, kind: str, message: str) -> None:
        """Give up on a leaf for this run (its plan shard cannot be committed until retried)."""
        with self._tx() as cur:
            self._move(cur, leaf_key, ("pending", "running"), "parked")
            self._error(cur, kind, leaf_key, message)

    def record_error(self, kind: str, leaf_key: str | None = None, message: str = "") -> None:
        """Count an error by kind (and against the leaf's attempts, if any)."""
        with self._tx() as cur:
            self._error(cur, kind, leaf_key, message)

    def _error(self, cur: psycopg.Cursor[Any], kind: str, leaf: str | None, message: str) -> None:
        now = time.time()
        cur.execute(
            "INSERT INTO errors (study, kind, count) VALUES (%s, %s, 1) "
            "ON CONFLICT (study, kind) DO UPDATE SET count = errors.count + 1",
            (self._study, kind),
        )
        cur.execute(
            "INSERT INTO error_hours (study, hour, kind, count) VALUES (%s, %s, %s, 1) "
            "ON CONFLICT (study, hour, kind) DO UPDATE SET count = error_hours.count + 1",
            (self._study, int(now // 3600 * 3600), kind),
        )
        if leaf is not None:
            cur.execute(
                "UPDATE shards SET attempts = attempts + 1, error_kind = %s, last_error = %s, "
                "updated_at = %s WHERE study = %s AND key = %s",
                (kind, message[:2000], now, self._study, leaf),
            )

    def retry_parked(self) -> int:
        """parked → pending for every parked leaf (`harvester run --retry-failed`)."""
        rows = self._query(
            "UPDATE shards SET status = 'pending', attempts = 0, updated_at = %s "
            "WHERE study = %s AND status = 'parked' RETURNING key",
            (time.time(), self._study),
        )
        return len(rows)

    # -- segments and files --------------------------------------------------------------------

    def segments(
        self, *, leaf_key: str | None = None, plan_key: str | None = None
    ) -> list[SegmentRecord]:
        """Staged segments in the order they were fetched (by leaf window, then page)."""
        sql = (
            "SELECT g.path, g.leaf_key, g.plan_key, g.seq, g.rows FROM segments g "
            "JOIN shards s ON s.study = g.study AND s.key = g.leaf_key WHERE g.study = %s"
        )
        args: list[Any] = [self._study]
        if leaf_key is not None:
            sql += " AND g.leaf_key = %s"
            args.append(leaf_key)
        if plan_key is not None:
            sql += " AND g.plan_key = %s"
            args.append(plan_key)
        rows = self._query(sql + " ORDER BY s.start_ts, g.seq", args)
        return [SegmentRecord(*r) for r in rows]

    def plan_ready(self, plan_key: str) -> bool:
        """Whether every leaf of the plan shard is done (and it is not committed yet)."""
        rows = self._query(
            "SELECT count(*) FILTER (WHERE status NOT IN ('done', 'split')), "
            "max(committed_at) FILTER (WHERE key = plan_key), count(*) "
            "FROM shards WHERE study = %s AND plan_key = %s",
            (self._study, plan_key),
        )
        open_leaves, committed, count = rows[0]
        return bool(count) and not open_leaves and committed is None

    def committed_costs(self) -> list[tuple[str, int, int]]:
        """(plan key, records, pages) of every committed plan shard, its leaves summed."""
        rows = self._query(
            "SELECT p.key, coalesce(sum(l.records), 0), coalesce(sum(l.pages), 0) "
            "FROM shards p JOIN shards l ON l.study = p.study AND l.plan_key = p.key "
            "WHERE p.study = %s AND p.parent_key IS NULL AND p.committed_at IS NOT NULL "
            "GROUP BY p.key, p.start_ts ORDER BY p.start_ts",
            (self._study,),
        )
        return [(str(k), int(r), int(n)) for k, r, n in rows]

    def commit_plan_shard(
        self, plan_key: str, files: Iterable[FileLike], *, at: float | None = None
    ) -> list[str]:
        """Record the plan shard's dataset files (replacing any earlier ones), mark it committed
        (at `at`, the run's clock; now by default) and forget its segments; returns its leaf
        keys, whose staging can now go."""
        now = time.time() if at is None else at
        study = self._study
        with self._tx() as cur:
            plan = self._get(cur, plan_key, lock=True)
            if plan.parent_key is not None:
                raise StateError(f"{plan_key} is a leaf, not a plan shard")
            (open_leaves,) = _one(
                cur,
                "SELECT count(*) FROM shards WHERE study = %s AND plan_key = %s "
                "AND status NOT IN ('done', 'split')",
                (study, plan_key),
            )
            if open_leaves:
                raise StateError(f"plan shard {plan_key} has {open_leaves} unfinished leaves")
            cur.execute("DELETE FROM files WHERE study = %s AND plan_key = %s", (study, plan_key))
            cur.executemany(
                "INSERT INTO files (study, path, plan_key, partition, rows, committed_at) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                [(study, f.path, plan_key, f.partition, f.rows, now) for f in files],
            )
            cur.execute(
                "DELETE FROM segments WHERE study = %s AND plan_key = %s", (study, plan_key)
            )
            cur.execute(
                "UPDATE shards SET committed_at = %s WHERE study = %s AND key = %s",
                (now, study, plan_key),
            )
            # The window's harvest: from its first leaf's start to now, with what it holds.
            cur.execute(
                "INSERT INTO window_harvests (study, plan_key, started_at, committed_at, rows) "
                "SELECT %s, %s, min(started_at), %s, coalesce(sum(records), 0) "
                "FROM shards WHERE study = %s AND plan_key = %s",
                (study, plan_key, now, study, plan_key),
            )
            leaves = cur.execute(
                "SELECT key FROM shards WHERE study = %s AND plan_key = %s "
                "ORDER BY start_ts, end_ts DESC",
                (study, plan_key),
            ).fetchall()
        return [r[0] for r in leaves]

    def reopen_plan_shard(self, plan_key: str) -> list[str]:
        """See `SqliteState.reopen_plan_shard`."""
        study = self._study
        with self._tx() as cur:
            plan = self._get(cur, plan_key, lock=True)
            if plan.parent_key is not None:
                raise StateError(f"{plan_key} is a leaf, not a plan shard")
            if plan.committed_at is None:
                return []
            dropped = [
                r[0]
                for r in cur.execute(
                    "DELETE FROM segments WHERE study = %s AND plan_key = %s RETURNING path",
                    (study, plan_key),
                ).fetchall()
            ]
            cur.execute(
                "UPDATE shards SET parent_key = NULL WHERE study = %s AND plan_key = %s "
                "AND key != %s",
                (study, plan_key, plan_key),
            )
            cur.execute(
                "DELETE FROM shards WHERE study = %s AND plan_key = %s AND key != %s",
                (study, plan_key, plan_key),
            )
            cur.execute(
                "UPDATE shards SET status = 'pending', committed_at = NULL, task_id = NULL, "
                "search_id = NULL, next_cursor = NULL, attempts = 0, last_error = NULL, "
                "error_kind = NULL, records = 0, pages = 0, filtered = 0, started_at = NULL, "
                "lease_owner = NULL, lease_until = NULL, updated_at = %s "
                "WHERE study = %s AND key = %s",
                (time.time(), study, plan_key),
            )
        return dropped

    def supersede_plan_shard(self, old_key: str, new: PlannedShard) -> list[str]:
        """See `SqliteState.supersede_plan_shard`."""
        study = self._study
        with self._tx() as cur:
            old = self._get(cur, old_key, lock=True)
            if old.parent_key is not None:
                raise StateError(f"{old_key} is a leaf, not a plan shard")
            if not (old.start == new.start and old.end < new.end):
                raise StateError(f"{new.key} does not complete {old_key}")
            cur.execute(
                "INSERT INTO shards (study, key, plan_key, start_ts, end_ts, status, updated_at) "
                "VALUES (%s, %s, %s, %s, %s, 'pending', %s) ON CONFLICT DO NOTHING",
                (study, new.key, new.key, new.start, new.end, time.time()),
            )
            for table in ("files", "window_harvests"):
                cur.execute(
                    f"UPDATE {table} SET plan_key = %s WHERE study = %s AND plan_key = %s",
                    (new.key, study, old_key),
                )
            dropped = [
                r[0]
                for r in cur.execute(
                    "DELETE FROM segments WHERE study = %s AND plan_key = %s RETURNING path",
                    (study, old_key),
                ).fetchall()
            ]
            cur.execute(
                "UPDATE shards SET parent_key = NULL WHERE study = %s AND plan_key = %s",
                (study, old_key),
            )
            cur.execute("DELETE FROM shards WHERE study = %s AND plan_key = %s", (study, old_key))
        return dropped

    def files(self, partition: str | None = None) -> list[FileRecord]:
        sql = "SELECT path, plan_key, partition, rows FROM files WHERE study = %s"
        args: list[Any] = [self._study]
        if partition is not None:
            sql += " AND partition = %s"
            args.append(partition)
        return [FileRecord(*r) for r in self._query(sql + " ORDER BY path", args)]

    def known_files(self) -> set[str]:
        """Every dataset file the state accounts for, a compaction's new file included."""
        rows = self._query(
            "SELECT path FROM files WHERE study = %s "
            "UNION SELECT new_path FROM compactions WHERE study = %s",
            (self._study, self._study),
        )
        return {r[0] for r in rows}

    def known_segments(self) -> set[str]:
        return {
            r[0] for r in self._query("SELECT path FROM segments WHERE study = %s", (self._study,))
        }

    def begin_compaction(
        self, partition: str, new_path: str, rows: int, old_paths: Sequence[str]
    ) -> None:
        """Before the swap: the new file becomes known, the old ones stay known."""
        with self._tx() as cur:
            known = {
                r[0]
                for r in cur.execute(
                    "SELECT path FROM files WHERE study = %s AND partition = %s FOR UPDATE",
                    (self._study, partition),
                ).fetchall()
            }
            if set(old_paths) != known:
                raise StateError(f"compaction of {partition} does not cover its files")
            cur.execute(
                "INSERT INTO compactions (study, partition, new_path, rows, old_paths) "
                "VALUES (%s, %s, %s, %s, %s)",
                (self._study, partition, new_path, rows, json.dumps(sorted(old_paths))),
            )

    def finish_compaction(self, partition: str) -> None:
        """After the swap: the new file replaces the old ones."""
        study = self._study
        with self._tx() as cur:
            row = cur.execute(
                "DELETE FROM compactions WHERE study = %s AND partition = %s "
                "RETURNING new_path, rows, old_paths",
                (study, partition),
            ).fetchone()
            if row is None:
                raise StateError(f"no compaction of {partition} in progress")
            new_path, rows, old = row
            cur.execute(
                "DELETE FROM files WHERE study = %s AND path = ANY(%s)", (study, json.loads(old))
            )
            cur.execute(
                "INSERT INTO files (study, path, plan_key, partition, rows, committed_at) "
                "VALUES (%s, %s, NULL, %s, %s, %s)",
                (study, new_path, partition, rows, time.time()),
            )

    def abort_compaction(self, partition: str) -> None:
        self._query(
            "DELETE FROM compactions WHERE study = %s AND partition = %s RETURNING partition",
            (self._study, partition),
        )

    def pending_compactions(self) -> list[PendingCompaction]:
        rows = self._query(
            "SELECT partition, new_path, rows, old_paths FROM compactions WHERE study = %s",
            (self._study,),
        )
        return [PendingCompaction(p, n, r, tuple(json.loads(o))) for p, n, r, o in rows]

    # -- the quota ledger ----------------------------------------------------------------------

    def _day(self, cur: psycopg.Cursor[Any], day: str) -> Usage:
        """The ledger's row for `day`, locked until the transaction ends."""
        cur.execute(
            "INSERT INTO quota (ledger, day) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (self.ledger, day),
        )
        row = _one(
            cur,
            "SELECT requests, records, exhausted FROM quota WHERE ledger = %s AND day = %s "
            "FOR UPDATE",
            (self.ledger, day),
        )
        return Usage(day, int(row[0]), int(row[1]), bool(row[2]))

    def _use(self, cur: psycopg.Cursor[Any], day: str, requests: int, records: int) -> None:
        cur.execute(
            "INSERT INTO quota_use (ledger, day, study, worker, requests, records) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (ledger, day, study, worker) DO UPDATE "
            "SET requests = greatest(quota_use.requests + excluded.requests, 0), "
            "records = quota_use.records + excluded.records",
            (self.ledger, day, self._study, self.worker, requests, records),
        )

    def reserve(self, day: str, requests: int = 1, *, cap: int | None = None) -> bool:
        """Reserve `requests` on `day` if the day's caps allow; False means wait for 00:00 UTC.

        `cap` overrides the store's `daily_requests`; the store's `daily_records` also applies.
        In a pool, the caps are the pool's and `share` caps this study's part of them.
        """
        cap = self.daily_requests if cap is None else cap
        with self._tx() as cur:
            used = self._day(cur, day)
            if used.exhausted or (cap is not None and used.requests + requests > cap):
                return False
            if self.daily_records is not None and used.records >= self.daily_records:
                return False
            if self.share is not None and not self._within_share(cur, day, requests, cap):
                return False
            cur.execute(
                "UPDATE quota SET requests = requests + %s WHERE ledger = %s AND day = %s",
                (requests, self.ledger, day),
            )
            self._use(cur, day, requests, 0)
            return True

    def _within_share(
        self, cur: psycopg.Cursor[Any], day: str, requests: int, cap: int | None
    ) -> bool:
        assert self.share is not None
        mine_requests, mine_records = _one(
            cur,
            "SELECT coalesce(sum(requests), 0), coalesce(sum(records), 0) FROM quota_use "
            "WHERE ledger = %s AND day = %s AND study = %s",
            (self.ledger, day, self._study),
        )
        if cap is not None and mine_requests + requests > int(cap * self.share):
            return False
        return not (
            self.daily_records is not None and mine_records >= int(self.daily_records * self.share)
        )

    def settle(self, day: str, *, records: int) -> None:
        """Count the records a reserved request delivered."""
        with self._tx() as cur:
            self._day(cur, day)
            cur.execute(
                "UPDATE quota SET records = records + %s WHERE ledger = %s AND day = %s",
                (records, self.ledger, day),
            )
            self._use(cur, day, 0, records)

    def release(self, day: str, requests: int = 1) -> None:
        """Give back a reservation whose request was never sent."""
        with self._tx() as cur:
            self._day(cur, day)
            cur.execute(
                "UPDATE quota SET requests = greatest(requests - %s, 0) "
                "WHERE ledger = %s AND day = %s",
                (requests, self.ledger, day),
            )
            self._use(cur, day, -requests, 0)

    def exhaust(self, day: str) -> None:
        """The API said the daily quota is spent: refuse reservations for the rest of `day`."""
        with self._tx() as cur:
            self._day(cur, day)
            cur.execute(
                "UPDATE quota SET exhausted = TRUE WHERE ledger = %s AND day = %s",
                (self.ledger, day),
            )

    def usage(self, day: str) -> Usage:
        rows = self._query(
            "SELECT requests, records, exhausted FROM quota WHERE ledger = %s AND day = %s",
            (self.ledger, day),
        )
        if not rows:
            return Usage(day, 0, 0, False)
        requests, records, exhausted = rows[0]
        return Usage(day, int(requests), int(records), bool(exhausted))

    def quota_days(self) -> list[Usage]:
        """Every day of the study's ledger (a pool's, shared with its other studies)."""
        rows = self._query(
            "SELECT day, requests, records, exhausted FROM quota WHERE ledger = %s ORDER BY day",
            (self.ledger,),
        )
        return [Usage(str(d), int(q), int(r), bool(x)) for d, q, r, x in rows]

    def error_hours(self) -> list[ErrorCount]:
        rows = self._query(
            "SELECT hour, kind, count FROM error_hours WHERE study = %s ORDER BY hour, kind",
            (self._study,),
        )
        return [ErrorCount(int(h), str(k), int(n)) for h, k, n in rows]

    def window_harvests(self) -> list[WindowHarvest]:
        rows = self._query(
            "SELECT plan_key, started_at, committed_at, rows FROM window_harvests "
            "WHERE study = %s ORDER BY committed_at, plan_key",
            (self._study,),
        )
        return [WindowHarvest(str(k), s, float(c), int(r)) for k, s, c, r in rows]

    def usage_by_worker(self, day: str) -> list[WorkerUsage]:
        """The ledger's use on `day` by study and worker (every study of a pool)."""
        rows = self._query(
            "SELECT study, worker, requests, records FROM quota_use "
            "WHERE ledger = %s AND day = %s ORDER BY study, worker",
            (self.ledger, day),
        )
        return [WorkerUsage(day, s, w, int(q), int(r)) for s, w, q, r in rows]

    def status(self, day: str | None = None) -> StatusSummary:
        """Counts for `harvester status`: a few indexed aggregates."""
        study = self._study
        by_status = {
            s: int(n)
            for s, n in self._query(
                "SELECT status, count(*) FROM shards WHERE study = %s GROUP BY status", (study,)
            )
        }
        plans, committed, records, pages, filtered = self._query(
            "SELECT count(*) FILTER (WHERE parent_key IS NULL), count(committed_at), "
            "coalesce(sum(records), 0), coalesce(sum(pages), 0), coalesce(sum(filtered), 0) "
            "FROM shards WHERE study = %s",
            (study,),
        )[0]
        files, rows = self._query(
            "SELECT count(*), coalesce(sum(rows), 0) FROM files WHERE study = %s", (study,)
        )[0]
        errors = {
            k: int(n)
            for k, n in self._query(
                "SELECT kind, count FROM errors WHERE study = %s ORDER BY kind", (study,)
            )
        }
        return StatusSummary(
            shards=by_status,
            plan_shards=int(plans or 0),
            committed_plan_shards=int(committed),
            records=int(records),
            pages=int(pages),
            files=int(files),
            dataset_rows=int(rows),
            today=self.usage(day or utc_day()),
            errors=errors,
            filtered=int(filtered),
        )
