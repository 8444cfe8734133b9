"""`SqliteState`: one SQLite file per study, in WAL mode, every operation one transaction.

`synchronous=FULL`: each commit waits for one fsync of the WAL. A page costs a network round
trip of a second or so, so the millisecond is cheap, and it means a committed checkpoint (and
the segment it names, fsynced before) survives a power cut, not only a process crash.
Write transactions start with `BEGIN IMMEDIATE` so two processes (a run and `harvester status`,
or two runs sharing a quota ledger) queue on the write lock instead of failing mid-transaction.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

from harvester._exceptions import StateError
from harvester.state._core import SHARD_COLS, utc_day
from harvester.state._ledger import Ledger
from harvester.state.base import (
    FileLike,
    FileRecord,
    PendingCompaction,
    PlannedShard,
    Restart,
    SegmentRecord,
    ShardRecord,
    Status,
    WindowHarvest,
    check_children,
)

__all__ = ["SqliteState", "utc_day"]


class SqliteState(Ledger):
    """The state of one study (see `StateStore`). Safe to share between threads."""

    # -- shards --------------------------------------------------------------------------------

    def add_plan_shards(self, shards: Iterable[PlannedShard]) -> int:
        """Add plan shards; already present ones are left as they are. Returns how many were new.

        A key already planned with another window means the plan changed under the same
        fingerprint: refuse rather than mix two plans.
        """
        now = time.time()
        added = 0
        with self._tx() as db:
            for s in shards:
                row = db.execute(
                    "SELECT start_ts, end_ts FROM shards WHERE key = ?", (s.key,)
                ).fetchone()
                if row is not None:
                    if tuple(row) != (s.start, s.end):
                        raise StateError(f"shard {s.key} is already planned with another window")
                    continue
                db.execute(
                    "INSERT INTO shards (key, plan_key, start_ts, end_ts, status, updated_at) "
                    "VALUES (?, ?, ?, ?, 'pending', ?)",
                    (s.key, s.key, s.start, s.end, now),
                )
                added += 1
        return added

    def split(self, key: str, children: Sequence[PlannedShard]) -> list[str]:
        """Replace leaf `key` by `children`, which must tile its window exactly.

        The leaf's staged segments are forgotten in the same transaction (the children fetch
        those records again, and a record belongs to one leaf only); returns their paths so the
        caller can delete them (or leave them to `cleanup_staging`).
        """
        with self._tx() as db:
            parent = self._get(db, key)
            if parent.status not in ("pending", "running", "parked"):
                raise StateError(f"cannot split shard {key}: it is {parent.status}")
            ordered = check_children(parent, children)
            now = time.time()
            db.executemany(
                "INSERT INTO shards (key, parent_key, plan_key, start_ts, end_ts, status, "
                "updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                [(c.key, key, parent.plan_key, c.start, c.end, now) for c in ordered],
            )
            dropped = [
                r[0] for r in db.execute("SELECT path FROM segments WHERE leaf_key = ?", (key,))
            ]
            db.execute("DELETE FROM segments WHERE leaf_key = ?", (key,))
            db.execute(
                "UPDATE shards SET status = 'split', records = 0, filtered = 0, "
                "next_cursor = NULL, search_id = NULL, task_id = NULL, updated_at = ? "
                "WHERE key = ?",
                (now, key),
            )
        return dropped

    def shard(self, key: str) -> ShardRecord:
        with self._mutex:
            try:
                return self._get(self._db, key)
            except sqlite3.Error as e:
                raise StateError(f"cannot read state {self.path}: {e}") from e

    def shards(
        self, status: Status | None = None, plan_key: str | None = None
    ) -> list[ShardRecord]:
        """Shards by window start, optionally only those with `status` / of one plan shard."""
        sql = f"SELECT {SHARD_COLS} FROM shards WHERE 1 = 1"
        args: list[Any] = []
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        if plan_key is not None:
            sql += " AND plan_key = ?"
            args.append(plan_key)
        return [self._shard(r) for r in self._query(sql + " ORDER BY start_ts, end_ts DESC", args)]

    def start_leaf(self, key: str) -> ShardRecord:
        """pending → running; returns the leaf with its cursor to resume from."""
        with self._tx() as db:
            self._move(db, key, ("pending",), "running")
            db.execute(
                "UPDATE shards SET started_at = coalesce(started_at, updated_at) WHERE key = ?",
                (key,),
            )
            return self._get(db, key)

    def requeue_leaf(self, key: str) -> None:
        """running → pending for one leaf (to be tried again later in this run), cursor kept."""
        with self._tx() as db:
            self._move(db, key, ("running",), "pending")

    def reset_running(self) -> int:
        """At start-up: leaves a dead run left running become pending, cursors kept."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE shards SET status = 'pending', updated_at = ? WHERE status = 'running'",
                (time.time(),),
            )
            return int(cur.rowcount)

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
        the exact filter dropped from it and the leaf's new position, together. A failure
        leaves the leaf exactly as before."""
        with self._tx() as db:
            leaf = self._get(db, leaf_key)
            if leaf.status != "running":
                raise StateError(f"cannot checkpoint shard {leaf_key}: it is {leaf.status}")
            if segment is not None:
                db.execute(
                    "INSERT INTO segments (path, leaf_key, plan_key, seq, rows) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (segment, leaf_key, leaf.plan_key, leaf.pages, rows),
                )
            elif rows:
                raise StateError(f"page of {leaf_key} has {rows} rows but no segment")
            db.execute(
                "UPDATE shards SET records = records + ?, filtered = filtered + ?, "
                "pages = pages + 1, next_cursor = ?, search_id = COALESCE(?, search_id), "
                "task_id = COALESCE(?, task_id), updated_at = ? WHERE key = ?",
                (rows, filtered, cursor, search_id, task_id, time.time(), leaf_key),
            )

    def restart_leaf(self, leaf_key: str, *, task_id: str | None = None) -> None:
        """Forget the leaf's search_id/cursor (or RQS task) to fetch its window from the start;
        staged pages stay and the seen-set drops what they already hold."""
        with self._tx() as db:
            self._get(db, leaf_key)
            db.execute(
                "UPDATE shards SET search_id = NULL, next_cursor = NULL, task_id = ?, "
                "updated_at = ? WHERE key = ?",
                (task_id, time.time(), leaf_key),
            )

    def record_restart(self, leaf_key: str, reason: str, day: str) -> int:
        """Note that the leaf restarted from cursor 0 for `reason` on UTC `day`; returns how
        many times it has restarted for that reason, this one included, on any day."""
        with self._tx() as db:
            self._get(db, leaf_key)
            db.execute(
                "INSERT INTO restarts (leaf_key, reason, day, count) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (leaf_key, reason, day) DO UPDATE SET count = restarts.count + 1",
                (leaf_key, reason, day),
            )
            row = db.execute(
                "SELECT sum(count) FROM restarts WHERE leaf_key = ? AND reason = ?",
                (leaf_key, reason),
            ).fetchone()
        return int(row[0])

    def restarts(self) -> list[Restart]:
        rows = self._query(
            "SELECT leaf_key, reason, day, count FROM restarts ORDER BY leaf_key, day, reason"
        )
        return [Restart(str(k), str(r), str(d), int(c)) for k, r, d, c in rows]

    def mark_done(self, leaf_key: str) -> None:
        with self._tx() as db:
            self._move(db, leaf_key, ("running",), "done")

    def park(self, leaf_key: str, kind: str, message: str) -> None:
        """Give up on a leaf for this run (its plan shard cannot be committed until retried)."""
        with self._tx() as db:
            self._move(db, leaf_key, ("pending", "running"), "parked")
            self._error(db, kind, leaf_key, message)

    def record_error(self, kind: str, leaf_key: str | None = None, message: str = "") -> None:
        """Count an error by kind (and against the leaf's attempts, if any)."""
        with self._tx() as db:
            self._error(db, kind, leaf_key, message)

    def _error(self, db: sqlite3.Connection, kind: str, leaf: str | None, message: str) -> None:
        now = time.time()
        db.execute(
            "INSERT INTO errors (kind, count) VALUES (?, 1) "
            "ON CONFLICT (kind) DO UPDATE SET count = errors.count + 1",
            (kind,),
        )
        # The same count by hour, for the report's failures over time: a row per kind and
        # hour that saw one, so a long study's history stays small.
        db.execute(
            "INSERT INTO error_hours (hour, kind, count) VALUES (?, ?, 1) "
            "ON CONFLICT (hour, kind) DO UPDATE SET count = error_hours.count + 1",
            (int(now // 3600 * 3600), kind),
        )
        if leaf is not None:
            db.execute(
                "UPDATE shards SET attempts = attempts + 1, error_kind = ?, last_error = ?, "
                "updated_at = ? WHERE key = ?",
                (kind, message[:2000], now, leaf),
            )

    def retry_parked(self) -> int:
        """parked → pending for every parked leaf (`harvester run --retry-failed`)."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE shards SET status = 'pending', attempts = 0, updated_at = ? "
                "WHERE status = 'parked'",
                (time.time(),),
            )
            return int(cur.rowcount)

    # -- segments and files --------------------------------------------------------------------

    def segments(
        self, *, leaf_key: str | None = None, plan_key: str | None = None
    ) -> list[SegmentRecord]:
        """Staged segments in the order they were fetched (by leaf window, then page)."""
        sql = (
            "SELECT g.path, g.leaf_key, g.plan_key, g.seq, g.rows FROM segments g "
            "JOIN shards s ON s.key = g.leaf_key WHERE 1 = 1"
        )
        args: list[Any] = []
        if leaf_key is not None:
            sql += " AND g.leaf_key = ?"
            args.append(leaf_key)
        if plan_key is not None:
            sql += " AND g.plan_key = ?"
            args.append(plan_key)
        rows = self._query(sql + " ORDER BY s.start_ts, g.seq", args)
        return [SegmentRecord(*r) for r in rows]

    def plan_ready(self, plan_key: str) -> bool:
        """Whether every leaf of the plan shard is done (and it is not committed yet)."""
        rows = self._query(
            "SELECT sum(CASE WHEN status NOT IN ('done', 'split') THEN 1 ELSE 0 END), "
            "max(CASE WHEN key = plan_key THEN committed_at END), count(*) "
            "FROM shards WHERE plan_key = ?",
            (plan_key,),
        )
        open_leaves, committed, count = rows[0]
        return bool(count) and not open_leaves and committed is None

    def committed_costs(self) -> list[tuple[str, int, int]]:
        """(plan key, records, pages) of every committed plan shard, its leaves summed: one
        aggregate, so `plan` stays fast at 50,000 shards."""
        rows = self._query(
            "SELECT p.key, coalesce(sum(l.records), 0), coalesce(sum(l.pages), 0) "
            "FROM shards p JOIN shards l ON l.plan_key = p.key "
            "WHERE p.parent_key IS NULL AND p.committed_at IS NOT NULL "
            "GROUP BY p.key ORDER BY p.start_ts"
        )
        return [(str(k), int(r), int(n)) for k, r, n in rows]

    def commit_plan_shard(
        self, plan_key: str, files: Iterable[FileLike], *, at: float | None = None
    ) -> list[str]:
        """Record the plan shard's dataset files (replacing any earlier ones), mark it committed
        (at `at`, the run's clock; now by default) and forget its segments; returns its leaf
        keys, whose staging can now go."""
        now = time.time() if at is None else at
        with self._tx() as db:
            plan = self._get(db, plan_key)
            if plan.parent_key is not None:
                raise StateError(f"{plan_key} is a leaf, not a plan shard")
            (open_leaves,) = db.execute(
                "SELECT count(*) FROM shards "
                "WHERE plan_key = ? AND status NOT IN ('done', 'split')",
                (plan_key,),
            ).fetchone()
            if open_leaves:
                raise StateError(f"plan shard {plan_key} has {open_leaves} unfinished leaves")
            db.execute("DELETE FROM files WHERE plan_key = ?", (plan_key,))
            db.executemany(
                "INSERT INTO files (path, plan_key, partition, rows, committed_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(f.path, plan_key, f.partition, f.rows, now) for f in files],
            )
            db.execute("DELETE FROM segments WHERE plan_key = ?", (plan_key,))
            db.execute("UPDATE shards SET committed_at = ? WHERE key = ?", (now, plan_key))
            # The window's harvest: from its first leaf's start to now, with what it holds.
            db.execute(
                "INSERT INTO window_harvests (plan_key, started_at, committed_at, rows) "
                "SELECT ?, min(started_at), ?, coalesce(sum(records), 0) "
                "FROM shards WHERE plan_key = ?",
                (plan_key, now, plan_key),
            )
            leaves = db.execute(
                "SELECT key FROM shards WHERE plan_key = ? ORDER BY start_ts, end_ts DESC",
                (plan_key,),
            ).fetchall()
        return [r[0] for r in leaves]

    def reopen_plan_shard(self, plan_key: str) -> list[str]:
        """A committed plan shard back to one pending leaf, to be harvested again (a refresh);
        its files stay recorded (readable) until the new harvest's commit replaces them.
        Returns the staged segments its old leaves still had (none after a commit)."""
        with self._tx() as db:
            plan = self._get(db, plan_key)
            if plan.parent_key is not None:
                raise StateError(f"{plan_key} is a leaf, not a plan shard")
            if plan.committed_at is None:
                return []
            dropped = [
                r[0]
                for r in db.execute("SELECT path FROM segments WHERE plan_key = ?", (plan_key,))
            ]
            db.execute("DELETE FROM segments WHERE plan_key = ?", (plan_key,))
            db.execute(
                "UPDATE shards SET parent_key = NULL WHERE plan_key = ? AND key != ?",
                (plan_key, plan_key),
            )
            db.execute("DELETE FROM shards WHERE plan_key = ? AND key != ?", (plan_key, plan_key))
            db.execute(
                "UPDATE shards SET status = 'pending', committed_at = NULL, task_id = NULL, "
                "search_id = NULL, next_cursor = NULL, attempts = 0, last_error = NULL, "
                "error_kind = NULL, records = 0, pages = 0, filtered = 0, started_at = NULL, "
                "updated_at = ? WHERE key = ?",
                (time.time(), plan_key),
            )
        return dropped

    def supersede_plan_shard(self, old_key: str, new: PlannedShard) -> list[str]:
        """Plan shard `new` takes over `old_key`'s files and harvest history (a window the end
        date cut short, completed); `old_key` is forgotten. The old files stay readable until
        `new` is committed. Returns `old_key`'s staged segments, to delete."""
        with self._tx() as db:
            old = self._get(db, old_key)
            if old.parent_key is not None:
                raise StateError(f"{old_key} is a leaf, not a plan shard")
            if not (old.start == new.start and old.end < new.end):
                raise StateError(f"{new.key} does not complete {old_key}")
            db.execute(
                "INSERT INTO shards (key, plan_key, start_ts, end_ts, status, updated_at) "
                "VALUES (?, ?, ?, ?, 'pending', ?) ON CONFLICT (key) DO NOTHING",
                (new.key, new.key, new.start, new.end, time.time()),
            )
            db.execute("UPDATE files SET plan_key = ? WHERE plan_key = ?", (new.key, old_key))
            db.execute(
                "UPDATE window_harvests SET plan_key = ? WHERE plan_key = ?", (new.key, old_key)
            )
            dropped = [
                r[0] for r in db.execute("SELECT path FROM segments WHERE plan_key = ?", (old_key,))
            ]
            db.execute("DELETE FROM segments WHERE plan_key = ?", (old_key,))
            db.execute("UPDATE shards SET parent_key = NULL WHERE plan_key = ?", (old_key,))
            db.execute("DELETE FROM shards WHERE plan_key = ?", (old_key,))
        return dropped

    def window_harvests(self) -> list[WindowHarvest]:
        rows = self._query(
            "SELECT plan_key, started_at, committed_at, rows FROM window_harvests "
            "ORDER BY committed_at, plan_key"
        )
        return [WindowHarvest(str(k), s, float(c), int(r)) for k, s, c, r in rows]

    def files(self, partition: str | None = None) -> list[FileRecord]:
        sql = "SELECT path, plan_key, partition, rows FROM files"
        args: tuple[str, ...] = ()
        if partition is not None:
            sql += " WHERE partition = ?"
            args = (partition,)
        return [FileRecord(*r) for r in self._query(sql + " ORDER BY path", args)]

    def known_files(self) -> set[str]:
        """Every dataset file the state accounts for, a compaction's new file included."""
        rows = self._query("SELECT path FROM files UNION SELECT new_path FROM compactions")
        return {r[0] for r in rows}

    def known_segments(self) -> set[str]:
        return {r[0] for r in self._query("SELECT path FROM segments")}

    def begin_compaction(
        self, partition: str, new_path: str, rows: int, old_paths: Sequence[str]
    ) -> None:
        """Before the swap: the new file becomes known, the old ones stay known."""
        with self._tx() as db:
            known = {
                r[0] for r in db.execute("SELECT path FROM files WHERE partition = ?", (partition,))
            }
            if set(old_paths) != known:
                raise StateError(f"compaction of {partition} does not cover its files")
            db.execute(
                "INSERT INTO compactions (partition, new_path, rows, old_paths) "
                "VALUES (?, ?, ?, ?)",
                (partition, new_path, rows, json.dumps(sorted(old_paths))),
            )

    def finish_compaction(self, partition: str) -> None:
        """After the swap: the new file replaces the old ones."""
        with self._tx() as db:
            row = db.execute(
                "SELECT new_path, rows, old_paths FROM compactions WHERE partition = ?",
                (partition,),
            ).fetchone()
            if row is None:
                raise StateError(f"no compaction of {partition} in progress")
            new_path, rows, old = row
            db.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in json.loads(old)])
            db.execute(
                "INSERT INTO files (path, plan_key, partition, rows, committed_at) "
                "VALUES (?, NULL, ?, ?, ?)",
                (new_path, partition, rows, time.time()),
            )
            db.execute("DELETE FROM compactions WHERE partition = ?", (partition,))

    def abort_compaction(self, partition: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM compactions WHERE partition = ?", (partition,))

    def pending_compactions(self) -> list[PendingCompaction]:
        rows = self._query("SELECT partition, new_path, rows, old_paths FROM compactions")
        return [PendingCompaction(p, n, r, tuple(json.loads(o))) for p, n, r, o in rows]
