"""`SqlStore`: every operation of a study's state, written once over the shared SQL.

The concrete stores keep what really differs: `SqliteState` a file, its single-runner lock and
leaves it never needs to lease; `PostgresState` a connection pool, advisory locks, leases of
leaves between workers and shares of a pool. Each gives a write transaction (`_tx`) and a read
(`_read`) as a `Tx`, the study key its rows carry (`scope`) and its quota ledger.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager

from harvester._exceptions import StateError, StudyChangedError
from harvester.state._ledger import Ledger, utc_day
from harvester.state._sql import Reader, Tx, narrowed
from harvester.state.base import (
    ErrorCount,
    FileLike,
    FileRecord,
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
from harvester.state.enrich import EnrichState

__all__ = ["SHARD_COLS", "SqlStore"]

SHARD_COLS = (
    "key, parent_key, plan_key, start_ts, end_ts, status, task_id, search_id, next_cursor, "
    "attempts, last_error, error_kind, records, pages, updated_at, committed_at, filtered, "
    "started_at"
)

#: What a --replan forgets (children before the shards they reference); the ledger stays.
_PLAN_TABLES = (
    "compactions",
    "files",
    "segments",
    "errors",
    "error_hours",
    "window_harvests",
    "restarts",
)


class SqlStore(Reader):
    """The state of one study (see `StateStore`); every method is one transaction."""

    #: The study key of this store's rows.
    scope: str
    #: Who holds leases and used quota ('' for SQLite's single runner).
    worker: str
    #: A lease lasts this long unless renewed (checkpoints and heartbeats renew it).
    lease_seconds: float = 60.0
    #: The study's quota ledger (a pool's, when it shares one).
    quota: Ledger

    # -- what each store provides ----------------------------------------------------------------

    def _tx(self) -> AbstractContextManager[Tx]:
        """One write transaction: all of it commits, or none of it."""
        raise NotImplementedError

    @property
    def study(self) -> str:
        raise NotImplementedError

    @property
    def alone(self) -> bool:
        raise NotImplementedError

    def lock(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def enrichments(self, *, daily_requests: int, daily_records: int) -> EnrichState:
        """The study's enrichment state, with the followers/following pool's caps."""
        return EnrichState(self, daily_requests=daily_requests, daily_records=daily_records)

    def _changed(self) -> StudyChangedError:
        """The refusal of a changed study, saying where the state is."""
        raise NotImplementedError

    def _may_replan(self) -> None:
        """Raise unless this worker may forget the plan (no other worker is at it)."""

    def _record_name(self, tx: Tx, study: str) -> None:
        """Remember the study's name where the rows do not say it."""

    def _check_lease(self, tx: Tx, key: str) -> None:
        """Refuse a write to a running leaf this worker no longer holds (a store whose
        workers lease leaves; a single runner holds every leaf)."""

    def _renew(self, tx: Tx, key: str) -> None:
        """Extend this worker's lease of a leaf it just checkpointed (where leaves are leased)."""

    # -- plumbing ------------------------------------------------------------------------------

    def _get(self, tx: Tx, key: str, *, lock: bool = False) -> ShardRecord:
        row = tx.execute(
            f"SELECT {SHARD_COLS} FROM shards WHERE study = ? AND key = ?"
            + (tx.dialect.lock if lock else ""),
            (self.scope, key),
        ).fetchone()
        if row is None:
            raise StateError(f"unknown shard {key!r}")
        return ShardRecord(*row)

    def _move(self, tx: Tx, key: str, frm: tuple[Status, ...], to: Status) -> None:
        shard = self._get(tx, key, lock=True)
        if shard.status not in frm:
            raise StateError(f"shard {key} is {shard.status}, not {' or '.join(frm)}")
        if shard.status == "running":
            self._check_lease(tx, key)
        tx.execute(
            "UPDATE shards SET status = ?, lease_owner = NULL, lease_until = NULL, "
            "updated_at = ? WHERE study = ? AND key = ?",
            (to, time.time(), self.scope, key),
        )

    # -- the study -----------------------------------------------------------------------------

    def open_study(
        self, study: str, fingerprint: str, version: str, *, replan: bool = False
    ) -> None:
        """Record the study on first use; refuse a changed study unless `replan` (which forgets
        every shard, segment and file, but keeps the quota ledger: that use was real)."""
        with self._tx() as tx:
            row = tx.execute(
                "SELECT fingerprint FROM studies WHERE study = ?" + tx.dialect.lock,
                (self.scope,),
            ).fetchone()
            if row is not None and row[0] != fingerprint:
                if not replan:
                    raise self._changed()
                self._may_replan()
                for table in _PLAN_TABLES:
                    tx.execute(f"DELETE FROM {table} WHERE study = ?", (self.scope,))
                tx.execute("UPDATE shards SET parent_key = NULL WHERE study = ?", (self.scope,))
                tx.execute("DELETE FROM shards WHERE study = ?", (self.scope,))
            tx.execute(
                "INSERT INTO studies (study, fingerprint, version, created_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (study) DO UPDATE "
                "SET fingerprint = excluded.fingerprint, version = excluded.version",
                (self.scope, fingerprint, version, time.time()),
            )
            self._record_name(tx, study)

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
        with self._tx() as tx:
            existing = tx.all(
                f"SELECT key, start_ts, end_ts FROM shards WHERE study = ? "
                f"AND key {tx.dialect.in_list}",
                (self.scope, tx.dialect.array(wanted)),
            )
            for key, start, end in existing:
                if (start, end) != (wanted[key].start, wanted[key].end):
                    raise StateError(f"shard {key} is already planned with another window")
            known = {r[0] for r in existing}
            new = [s for s in wanted.values() if s.key not in known]
            tx.executemany(
                "INSERT INTO shards (study, key, plan_key, start_ts, end_ts, status, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                [(self.scope, s.key, s.key, s.start, s.end, now) for s in new],
            )
        return len(new)

    def split(self, key: str, children: Sequence[PlannedShard]) -> list[str]:
        """Replace leaf `key` by `children`, which must tile its window exactly.

        The leaf's staged segments are forgotten in the same transaction (the children fetch
        those records again, and a record belongs to one leaf only); returns their paths so the
        caller can delete them (or leave them to `cleanup_staging`).
        """
        with self._tx() as tx:
            parent = self._get(tx, key, lock=True)
            if parent.status not in ("pending", "running", "parked"):
                raise StateError(f"cannot split shard {key}: it is {parent.status}")
            if parent.status == "running":
                self._check_lease(tx, key)
            ordered = check_children(parent, children)
            now = time.time()
            tx.executemany(
                "INSERT INTO shards (study, key, parent_key, plan_key, start_ts, end_ts, status, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
                [(self.scope, c.key, key, parent.plan_key, c.start, c.end, now) for c in ordered],
            )
            dropped = tx.column(
                "DELETE FROM segments WHERE study = ? AND leaf_key = ? RETURNING path",
                (self.scope, key),
            )
            tx.execute(
                "UPDATE shards SET status = 'split', records = 0, filtered = 0, "
                "next_cursor = NULL, search_id = NULL, task_id = NULL, lease_owner = NULL, "
                "lease_until = NULL, updated_at = ? WHERE study = ? AND key = ?",
                (now, self.scope, key),
            )
        return sorted(dropped)

    def shard(self, key: str) -> ShardRecord:
        with self._read() as tx:
            return self._get(tx, key)

    def shards(
        self, status: Status | None = None, plan_key: str | None = None
    ) -> list[ShardRecord]:
        """Shards by window start, optionally only those with `status` / of one plan shard."""
        rows = self._query(
            *narrowed(
                f"SELECT {SHARD_COLS} FROM shards WHERE study = ?",
                [self.scope],
                {"status": status, "plan_key": plan_key},
                "start_ts, end_ts DESC",
            )
        )
        return [ShardRecord(*r) for r in rows]

    def requeue_leaf(self, key: str) -> None:
        """running → pending for one leaf (to be tried again later), cursor kept."""
        with self._tx() as tx:
            self._move(tx, key, ("running",), "pending")

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
        the exact filter dropped from it and the leaf's new position, together (and renew the
        leaf's lease). A failure leaves the leaf exactly as before."""
        with self._tx() as tx:
            leaf = self._get(tx, leaf_key, lock=True)
            if leaf.status != "running":
                raise StateError(f"cannot checkpoint shard {leaf_key}: it is {leaf.status}")
            self._check_lease(tx, leaf_key)
            if segment is not None:
                tx.execute(
                    "INSERT INTO segments (study, path, leaf_key, plan_key, seq, rows) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (self.scope, segment, leaf_key, leaf.plan_key, leaf.pages, rows),
                )
            elif rows:
                raise StateError(f"page of {leaf_key} has {rows} rows but no segment")
            tx.execute(
                "UPDATE shards SET records = records + ?, filtered = filtered + ?, "
                "pages = pages + 1, next_cursor = ?, search_id = COALESCE(?, search_id), "
                "task_id = COALESCE(?, task_id), updated_at = ? WHERE study = ? AND key = ?",
                (rows, filtered, cursor, search_id, task_id, time.time(), self.scope, leaf_key),
            )
            self._renew(tx, leaf_key)

    def restart_leaf(self, leaf_key: str, *, task_id: str | None = None) -> None:
        """Forget the leaf's search_id/cursor (or RQS task) to fetch its window from the start;
        staged pages stay and the seen-set drops what they already hold."""
        with self._tx() as tx:
            self._get(tx, leaf_key, lock=True)
            self._check_lease(tx, leaf_key)
            tx.execute(
                "UPDATE shards SET search_id = NULL, next_cursor = NULL, task_id = ?, "
                "updated_at = ? WHERE study = ? AND key = ?",
                (task_id, time.time(), self.scope, leaf_key),
            )

    def record_restart(self, leaf_key: str, reason: str, day: str) -> int:
        """Note that the leaf restarted from cursor 0 for `reason` on UTC `day`; returns how
        many times it has restarted for that reason, this one included, on any day."""
        with self._tx() as tx:
            self._get(tx, leaf_key, lock=True)
            tx.execute(
                "INSERT INTO restarts (study, leaf_key, reason, day, count) "
                "VALUES (?, ?, ?, ?, 1) ON CONFLICT (study, leaf_key, reason, day) "
                "DO UPDATE SET count = restarts.count + 1",
                (self.scope, leaf_key, reason, day),
            )
            (total,) = tx.one(
                "SELECT sum(count) FROM restarts WHERE study = ? AND leaf_key = ? AND reason = ?",
                (self.scope, leaf_key, reason),
            )
        return int(total)

    def restarts(self) -> list[Restart]:
        rows = self._query(
            "SELECT leaf_key, reason, day, count FROM restarts WHERE study = ? "
            "ORDER BY leaf_key, day, reason",
            (self.scope,),
        )
        return [Restart(str(k), str(r), str(d), int(c)) for k, r, d, c in rows]

    def mark_done(self, leaf_key: str) -> None:
        with self._tx() as tx:
            self._move(tx, leaf_key, ("running",), "done")

    def park(self, leaf_key: str, kind: str, message: str) -> None:
        """Give up on a leaf for this run (its plan shard cannot be committed until retried)."""
        with self._tx() as tx:
            self._move(tx, leaf_key, ("pending", "running"), "parked")
            self._error(tx, kind, leaf_key, message)

    def record_error(self, kind: str, leaf_key: str | None = None, message: str = "") -> None:
        """Count an error by kind (and against the leaf's attempts, if any)."""
        with self._tx() as tx:
            self._error(tx, kind, leaf_key, message)

    def _error(self, tx: Tx, kind: str, leaf: str | None, message: str) -> None:
        now = time.time()
        tx.execute(
            "INSERT INTO errors (study, kind, count) VALUES (?, ?, 1) "
            "ON CONFLICT (study, kind) DO UPDATE SET count = errors.count + 1",
            (self.scope, kind),
        )
        # The same count by hour, for the report's failures over time: a row per kind and
        # hour that saw one, so a long study's history stays small.
        tx.execute(
            "INSERT INTO error_hours (study, hour, kind, count) VALUES (?, ?, ?, 1) "
            "ON CONFLICT (study, hour, kind) DO UPDATE SET count = error_hours.count + 1",
            (self.scope, int(now // 3600 * 3600), kind),
        )
        if leaf is not None:
            tx.execute(
                "UPDATE shards SET attempts = attempts + 1, error_kind = ?, last_error = ?, "
                "updated_at = ? WHERE study = ? AND key = ?",
                (kind, message[:2000], now, self.scope, leaf),
            )

    def retry_parked(self) -> int:
        """parked → pending for every parked leaf (`harvester run --retry-failed`)."""
        with self._tx() as tx:
            return tx.execute(
                "UPDATE shards SET status = 'pending', attempts = 0, updated_at = ? "
                "WHERE study = ? AND status = 'parked'",
                (time.time(), self.scope),
            ).rowcount

    # -- segments and files --------------------------------------------------------------------

    def segments(
        self, *, leaf_key: str | None = None, plan_key: str | None = None
    ) -> list[SegmentRecord]:
        """Staged segments in the order they were fetched (by leaf window, then page)."""
        rows = self._query(
            *narrowed(
                "SELECT g.path, g.leaf_key, g.plan_key, g.seq, g.rows FROM segments g "
                "JOIN shards s ON s.study = g.study AND s.key = g.leaf_key WHERE g.study = ?",
                [self.scope],
                {"g.leaf_key": leaf_key, "g.plan_key": plan_key},
                "s.start_ts, g.seq",
            )
        )
        return [SegmentRecord(*r) for r in rows]

    def plan_ready(self, plan_key: str) -> bool:
        """Whether every leaf of the plan shard is done (and it is not committed yet)."""
        open_leaves, committed, count = self._query(
            "SELECT count(*) FILTER (WHERE status NOT IN ('done', 'split')), "
            "max(committed_at) FILTER (WHERE key = plan_key), count(*) "
            "FROM shards WHERE study = ? AND plan_key = ?",
            (self.scope, plan_key),
        )[0]
        return bool(count) and not open_leaves and committed is None

    def committed_costs(self) -> list[tuple[str, int, int]]:
        """(plan key, records, pages) of every committed plan shard, its leaves summed: one
        aggregate, so `plan` stays fast at 50,000 shards."""
        rows = self._query(
            "SELECT p.key, coalesce(sum(l.records), 0), coalesce(sum(l.pages), 0) "
            "FROM shards p JOIN shards l ON l.study = p.study AND l.plan_key = p.key "
            "WHERE p.study = ? AND p.parent_key IS NULL AND p.committed_at IS NOT NULL "
            "GROUP BY p.key, p.start_ts ORDER BY p.start_ts",
            (self.scope,),
        )
        return [(str(k), int(r), int(n)) for k, r, n in rows]

    def _plan_shard(self, tx: Tx, plan_key: str) -> ShardRecord:
        plan = self._get(tx, plan_key, lock=True)
        if plan.parent_key is not None:
            raise StateError(f"{plan_key} is a leaf, not a plan shard")
        return plan

    def commit_plan_shard(
        self, plan_key: str, files: Iterable[FileLike], *, at: float | None = None
    ) -> list[str]:
        """Record the plan shard's dataset files (replacing any earlier ones), mark it committed
        (at `at`, the run's clock; now by default) and forget its segments; returns its leaf
        keys, whose staging can now go."""
        now = time.time() if at is None else at
        study = self.scope
        with self._tx() as tx:
            self._plan_shard(tx, plan_key)
            (open_leaves,) = tx.one(
                "SELECT count(*) FROM shards WHERE study = ? AND plan_key = ? "
                "AND status NOT IN ('done', 'split')",
                (study, plan_key),
            )
            if open_leaves:
                raise StateError(f"plan shard {plan_key} has {open_leaves} unfinished leaves")
            tx.execute("DELETE FROM files WHERE study = ? AND plan_key = ?", (study, plan_key))
            tx.executemany(
                "INSERT INTO files (study, path, plan_key, partition, rows, committed_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(study, f.path, plan_key, f.partition, f.rows, now) for f in files],
            )
            tx.execute("DELETE FROM segments WHERE study = ? AND plan_key = ?", (study, plan_key))
            tx.execute(
                "UPDATE shards SET committed_at = ? WHERE study = ? AND key = ?",
                (now, study, plan_key),
            )
            # The window's harvest: from its first leaf's start to now, with what it holds.
            tx.execute(
                "INSERT INTO window_harvests (study, plan_key, started_at, committed_at, rows) "
                "SELECT ?, ?, min(started_at), ?, coalesce(sum(records), 0) "
                "FROM shards WHERE study = ? AND plan_key = ?",
                (study, plan_key, now, study, plan_key),
            )
            return tx.column(
                "SELECT key FROM shards WHERE study = ? AND plan_key = ? "
                "ORDER BY start_ts, end_ts DESC",
                (study, plan_key),
            )

    def _forget_leaves(self, tx: Tx, plan_key: str, *, keep_plan: bool) -> list[str]:
        """Forget the plan shard's segments and leaves (and the plan shard itself unless
        `keep_plan`); returns the segments' paths."""
        dropped = tx.column(
            "DELETE FROM segments WHERE study = ? AND plan_key = ? RETURNING path",
            (self.scope, plan_key),
        )
        spare = " AND key != ?" if keep_plan else ""
        args = (self.scope, plan_key, plan_key) if keep_plan else (self.scope, plan_key)
        leaves = f"WHERE study = ? AND plan_key = ?{spare}"
        tx.execute(f"UPDATE shards SET parent_key = NULL {leaves}", args)
        tx.execute(f"DELETE FROM shards {leaves}", args)
        return sorted(dropped)

    def reopen_plan_shard(self, plan_key: str) -> list[str]:
        """A committed plan shard back to one pending leaf, to be harvested again (a refresh);
        its files stay recorded (readable) until the new harvest's commit replaces them.
        Returns the staged segments its old leaves still had (none after a commit)."""
        with self._tx() as tx:
            plan = self._plan_shard(tx, plan_key)
            if plan.committed_at is None:
                return []
            dropped = self._forget_leaves(tx, plan_key, keep_plan=True)
            tx.execute(
                "UPDATE shards SET status = 'pending', committed_at = NULL, task_id = NULL, "
                "search_id = NULL, next_cursor = NULL, attempts = 0, last_error = NULL, "
                "error_kind = NULL, records = 0, pages = 0, filtered = 0, started_at = NULL, "
                "lease_owner = NULL, lease_until = NULL, updated_at = ? "
                "WHERE study = ? AND key = ?",
                (time.time(), self.scope, plan_key),
            )
        return dropped

    def supersede_plan_shard(self, old_key: str, new: PlannedShard) -> list[str]:
        """Plan shard `new` takes over `old_key`'s files and harvest history (a window the end
        date cut short, completed); `old_key` is forgotten. The old files stay readable until
        `new` is committed. Returns `old_key`'s staged segments, to delete."""
        with self._tx() as tx:
            old = self._plan_shard(tx, old_key)
            if not (old.start == new.start and old.end < new.end):
                raise StateError(f"{new.key} does not complete {old_key}")
            tx.execute(
                "INSERT INTO shards (study, key, plan_key, start_ts, end_ts, status, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT DO NOTHING",
                (self.scope, new.key, new.key, new.start, new.end, time.time()),
            )
            for table in ("files", "window_harvests"):
                tx.execute(
                    f"UPDATE {table} SET plan_key = ? WHERE study = ? AND plan_key = ?",
                    (new.key, self.scope, old_key),
                )
            return self._forget_leaves(tx, old_key, keep_plan=False)

    def window_harvests(self) -> list[WindowHarvest]:
        """Every commit of a plan shard, oldest first."""
        rows = self._query(
            "SELECT plan_key, started_at, committed_at, rows FROM window_harvests "
            "WHERE study = ? ORDER BY committed_at, plan_key",
            (self.scope,),
        )
        return [WindowHarvest(str(k), s, float(c), int(r)) for k, s, c, r in rows]

    def files(self, partition: str | None = None) -> list[FileRecord]:
        rows = self._query(
            *narrowed(
                "SELECT path, plan_key, partition, rows FROM files WHERE study = ?",
                [self.scope],
                {"partition": partition},
                "path",
            )
        )
        return [FileRecord(*r) for r in rows]

    def known_files(self) -> set[str]:
        """Every dataset file the state accounts for, a compaction's new file included."""
        rows = self._query(
            "SELECT path FROM files WHERE study = ? "
            "UNION SELECT new_path FROM compactions WHERE study = ?",
            (self.scope, self.scope),
        )
        return {r[0] for r in rows}

    def known_segments(self) -> set[str]:
        rows = self._query("SELECT path FROM segments WHERE study = ?", (self.scope,))
        return {r[0] for r in rows}

    # -- compaction ----------------------------------------------------------------------------

    def begin_compaction(
        self, partition: str, new_path: str, rows: int, old_paths: Sequence[str]
    ) -> None:
        """Before the swap: the new file becomes known, the old ones stay known."""
        with self._tx() as tx:
            known = tx.column(
                "SELECT path FROM files WHERE study = ? AND partition = ?" + tx.dialect.lock,
                (self.scope, partition),
            )
            if set(old_paths) != set(known):
                raise StateError(f"compaction of {partition} does not cover its files")
            tx.execute(
                "INSERT INTO compactions (study, partition, new_path, rows, old_paths) "
                "VALUES (?, ?, ?, ?, ?)",
                (self.scope, partition, new_path, rows, json.dumps(sorted(old_paths))),
            )

    def finish_compaction(self, partition: str) -> None:
        """After the swap: the new file replaces the old ones."""
        study = self.scope
        with self._tx() as tx:
            row = tx.execute(
                "DELETE FROM compactions WHERE study = ? AND partition = ? "
                "RETURNING new_path, rows, old_paths",
                (study, partition),
            ).fetchone()
            if row is None:
                raise StateError(f"no compaction of {partition} in progress")
            new_path, rows, old = row
            tx.executemany(
                "DELETE FROM files WHERE study = ? AND path = ?",
                [(study, p) for p in json.loads(old)],
            )
            tx.execute(
                "INSERT INTO files (study, path, plan_key, partition, rows, committed_at) "
                "VALUES (?, ?, NULL, ?, ?, ?)",
                (study, new_path, partition, rows, time.time()),
            )

    def abort_compaction(self, partition: str) -> None:
        with self._tx() as tx:
            tx.execute(
                "DELETE FROM compactions WHERE study = ? AND partition = ?", (self.scope, partition)
            )

    def pending_compactions(self) -> list[PendingCompaction]:
        rows = self._query(
            "SELECT partition, new_path, rows, old_paths FROM compactions WHERE study = ?",
            (self.scope,),
        )
        return [PendingCompaction(p, n, r, tuple(json.loads(o))) for p, n, r, o in rows]

    # -- the quota ledger and the summary --------------------------------------------------------

    def reserve(self, day: str, requests: int = 1, *, cap: int | None = None) -> bool:
        return self.quota.reserve(day, requests, cap=cap)

    def settle(self, day: str, *, records: int) -> None:
        self.quota.settle(day, records=records)

    def release(self, day: str, requests: int = 1) -> None:
        self.quota.release(day, requests)

    def exhaust(self, day: str) -> None:
        self.quota.exhaust(day)

    def usage(self, day: str) -> Usage:
        return self.quota.usage(day)

    def usage_by_worker(self, day: str) -> list[WorkerUsage]:
        return self.quota.usage_by_worker(day)

    def usage_by_study(self) -> list[WorkerUsage]:
        return self.quota.usage_by_study()

    def quota_days(self) -> list[Usage]:
        return self.quota.days()

    def error_hours(self) -> list[ErrorCount]:
        """Errors per UTC hour and kind, oldest first (the history behind `status().errors`)."""
        rows = self._query(
            "SELECT hour, kind, count FROM error_hours WHERE study = ? ORDER BY hour, kind",
            (self.scope,),
        )
        return [ErrorCount(int(h), str(k), int(n)) for h, k, n in rows]

    def status(self, day: str | None = None) -> StatusSummary:
        """Counts for `harvester status`: a few indexed aggregates, fast at 50,000 shards."""
        with self._read() as tx:
            by_status = {
                str(s): int(n)
                for s, n in tx.all(
                    "SELECT status, count(*) FROM shards WHERE study = ? GROUP BY status",
                    (self.scope,),
                )
            }
            plans, committed, records, pages, filtered = tx.one(
                "SELECT count(*) FILTER (WHERE parent_key IS NULL), count(committed_at), "
                "coalesce(sum(records), 0), coalesce(sum(pages), 0), coalesce(sum(filtered), 0) "
                "FROM shards WHERE study = ?",
                (self.scope,),
            )
            files, rows = tx.one(
                "SELECT count(*), coalesce(sum(rows), 0) FROM files WHERE study = ?", (self.scope,)
            )
            errors = {
                str(k): int(n)
                for k, n in tx.all(
                    "SELECT kind, count FROM errors WHERE study = ? ORDER BY kind", (self.scope,)
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
