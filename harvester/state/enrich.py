"""`EnrichState`: the durable memory of a study's enrichments, in the study's own state.

Per kind, every target (a video id, a username, a playlist id, or a comment whose replies are
wanted) with its status, checkpointed cursor, staged segments and the dataset file its rows went
to; the followers/following pool's own daily quota ledger; error counts. The tables live beside
the study's (`enrich_*`, keyed by study), in its SQLite file or its PostgreSQL database, and are
read and written through the same SQL. As for the videos' leaves, every operation is one short
transaction, a page's segment is recorded in the transaction that advances its target's
cursor, and a worker runs a target under a lease (renewed by its checkpoints and heartbeats) so
that workers sharing a study in PostgreSQL never fetch one target twice; a worker presumed dead
loses its targets to the others, from their last checkpoint.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from harvester._exceptions import StateError
from harvester.state._ledger import Ledger
from harvester.state._sql import Tx, narrowed
from harvester.state.base import LeaseHeld, LeaseLost

if TYPE_CHECKING:
    from harvester.state._store import SqlStore

__all__ = ["STATUSES", "EnrichState", "KindSummary", "TargetRow"]

#: A target's statuses as `status` and the report show them (a running one is pending).
STATUSES = ("done", "pending", "unavailable", "failed")

log = structlog.get_logger("harvester.state")

_COLS = (
    "kind, target, parent, comment_id, status, cursor, pages, rows, attempts, outcome, file, "
    "settles_at, fetched_at, stale"
)


@dataclass(frozen=True, slots=True)
class TargetRow:
    """One target of one kind. `parent` and `comment_id` are set on a comment's replies."""

    kind: str
    target: str
    parent: str | None
    comment_id: int | None
    status: str
    cursor: int | None
    pages: int
    rows: int
    attempts: int
    outcome: str | None
    file: str | None
    settles_at: float | None = None
    fetched_at: float | None = None
    stale: bool = False


@dataclass(frozen=True, slots=True)
class KindSummary:
    """`harvester status` per kind: targets by status, verdicts, rows and pages."""

    kind: str
    targets: dict[str, int]
    outcomes: dict[str, int]
    rows: int
    pages: int
    files: int
    #: Fetched before their counts settled: a scheduled study fetches them again.
    unsettled: int = 0

    def by_status(self) -> dict[str, int]:
        """Targets by status in the order people read them, running counted as pending."""
        out = {k: self.targets.get(k, 0) for k in STATUSES}
        out["pending"] += self.targets.get("running", 0)
        return out

    @property
    def answered(self) -> int:
        """Requests the API answered: each page, and each refused target's one verdict."""
        return self.pages + self.targets.get("unavailable", 0)


class EnrichState:
    """The enrichment state of one study, in the study's store (thread-safe as it is).

    `quota` is the followers/following lists' own daily ledger: the study's (or, in a pool,
    the pool's) ledger name with `/followers`. Closing it closes the store if it `owns_store`.
    """

    def __init__(self, store: SqlStore, *, daily_requests: int, daily_records: int) -> None:
        self.store = store
        self.scope = store.scope
        self.quota = Ledger(
            store,
            f"{store.quota.name}/followers",
            daily_requests=daily_requests,
            daily_records=daily_records,
        )
        self.owns_store = False

    def close(self) -> None:
        if self.owns_store:
            self.store.close()

    def _tx(self) -> AbstractContextManager[Tx]:
        return self.store._tx()

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return self.store._query(sql, args)

    # -- targets -------------------------------------------------------------------------------

    def started(self) -> bool:
        """Whether any enrichment of the study has targets yet."""
        return bool(
            self._query("SELECT 1 FROM enrich_targets WHERE study = ? LIMIT 1", (self.scope,))
        )

    def add_targets(
        self, kind: str, targets: Iterable[str], settles: Mapping[str, float] | None = None
    ) -> int:
        """Add targets not yet known (known ones keep their status); returns how many were new.

        `settles` gives a target's settling time (its newest video's creation plus the study's
        `settle_days`); a known target's moves later when a newer video gives it.
        """
        now = time.time()
        settles = settles or {}
        count = "SELECT count(*) FROM enrich_targets WHERE study = ? AND kind = ?"
        with self._tx() as tx:
            (before,) = tx.one(count, (self.scope, kind))
            tx.executemany(
                "INSERT INTO enrich_targets (study, kind, target, status, updated_at, settles_at) "
                "VALUES (?, ?, ?, 'pending', ?, ?) ON CONFLICT (study, kind, target) DO UPDATE "
                f"SET settles_at = {tx.dialect.greatest}(coalesce(enrich_targets.settles_at, 0), "
                "excluded.settles_at) WHERE excluded.settles_at IS NOT NULL",
                [(self.scope, kind, t, now, settles.get(t)) for t in targets],
            )
            (after,) = tx.one(count, (self.scope, kind))
        return int(after - before)

    def reopen_unsettled(self, kind: str, now: float) -> tuple[list[str], list[str]]:
        """Open again every fetched target whose counts had not settled when it was fetched,
        last fetched on an earlier UTC day than `now`'s: its cursor and counts start over, its
        reply targets are forgotten, and it is marked stale when the dataset holds its rows
        (its next publication replaces them). Returns (targets reopened, staged segment paths
        of forgotten replies, to delete)."""
        today = now // 86_400 * 86_400
        with self._tx() as tx:
            due = tx.column(
                "SELECT target FROM enrich_targets WHERE study = ? AND kind = ? "
                "AND parent IS NULL AND status IN ('done', 'unavailable') "
                "AND settles_at IS NOT NULL AND fetched_at IS NOT NULL "
                "AND fetched_at < settles_at AND fetched_at < ? ORDER BY target" + tx.dialect.lock,
                (self.scope, kind, today),
            )
            dropped: list[str] = []
            for t in due:
                replies = (
                    "SELECT target FROM enrich_targets WHERE study = ? AND kind = ? AND parent = ?"
                )
                dropped += tx.column(
                    "DELETE FROM enrich_segments WHERE study = ? AND kind = ? "
                    f"AND target IN ({replies}) RETURNING path",
                    (self.scope, kind, self.scope, kind, t),
                )
                tx.execute(
                    "DELETE FROM enrich_targets WHERE study = ? AND kind = ? AND parent = ?",
                    (self.scope, kind, t),
                )
                self._set(
                    tx,
                    kind,
                    t,
                    "status = 'pending', cursor = NULL, pages = 0, rows = 0, attempts = 0, "
                    "outcome = NULL, message = NULL, lease_owner = NULL, lease_until = NULL, "
                    "stale = CASE WHEN file IS NOT NULL THEN 1 ELSE stale END, file = NULL",
                )
        return [str(t) for t in due], sorted(str(p) for p in dropped)

    def stale(self, kind: str) -> list[str]:
        """Fetched again, and the dataset still holds rows of the earlier fetch to replace."""
        rows = self._query(
            "SELECT target FROM enrich_targets WHERE study = ? AND kind = ? AND stale = 1 "
            "AND status IN ('done', 'unavailable') ORDER BY target",
            (self.scope, kind),
        )
        return [str(r[0]) for r in rows]

    def _get(self, tx: Tx, kind: str, target: str, *, lock: bool = False) -> TargetRow:
        row = tx.execute(
            f"SELECT {_COLS} FROM enrich_targets WHERE study = ? AND kind = ? AND target = ?"
            + (tx.dialect.lock if lock else ""),
            (self.scope, kind, target),
        ).fetchone()
        if row is None:
            raise StateError(f"unknown {kind} target {target!r}")
        return TargetRow(*row)

    def target(self, kind: str, target: str) -> TargetRow:
        with self.store._read() as tx:
            return self._get(tx, kind, target)

    def targets(self, kind: str, status: str | None = None) -> list[TargetRow]:
        rows = self._query(
            *narrowed(
                f"SELECT {_COLS} FROM enrich_targets WHERE study = ? AND kind = ?",
                [self.scope, kind],
                {"status": status},
                "target",
            )
        )
        return [TargetRow(*r) for r in rows]

    def reset_running(self) -> int:
        """Targets a killed run left running go back to pending (their cursor is kept): every
        running one when this worker is alone with the study, else those whose lease ran out."""
        with self._tx() as tx:
            stale = "" if self.store.alone else f" AND {_expired(tx)}"
            return tx.execute(
                "UPDATE enrich_targets SET status = 'pending', lease_owner = NULL, "
                f"lease_until = NULL WHERE study = ? AND status = 'running'{stale}",
                (self.scope,),
            ).rowcount

    def retry_failed(self, kind: str) -> int:
        with self._tx() as tx:
            return tx.execute(
                "UPDATE enrich_targets SET status = 'pending', attempts = 0 "
                "WHERE study = ? AND kind = ? AND status = 'failed'",
                (self.scope, kind),
            ).rowcount

    def _set(self, tx: Tx, kind: str, target: str, sql: str, *args: Any) -> None:
        cur = tx.execute(
            f"UPDATE enrich_targets SET {sql}, updated_at = ? "
            "WHERE study = ? AND kind = ? AND target = ?",
            (*args, time.time(), self.scope, kind, target),
        )
        if cur.rowcount != 1:
            raise StateError(f"unknown {kind} target {target!r}")

    def _lease(self, tx: Tx, kind: str, target: str) -> None:
        """Lease the target to this worker (a checkpoint, a heartbeat renew it)."""
        self._set(
            tx,
            kind,
            target,
            f"status = 'running', lease_owner = ?, lease_until = {tx.dialect.now} + ?",
            self.store.worker,
            self.store.lease_seconds,
        )

    def _holder(self, tx: Tx, kind: str, target: str) -> tuple[str | None, bool]:
        """Who holds the target's lease, and whether it ran out."""
        owner, expired = tx.one(
            f"SELECT lease_owner, {_expired(tx)} FROM enrich_targets "
            "WHERE study = ? AND kind = ? AND target = ?",
            (self.scope, kind, target),
        )
        return owner, bool(expired)

    def _check_lease(self, tx: Tx, kind: str, target: str) -> None:
        owner, _ = self._holder(tx, kind, target)
        if owner is not None and owner != self.store.worker:
            raise LeaseLost(f"{kind} target {target} was taken over by worker {owner}")

    def start(self, kind: str, target: str) -> TargetRow:
        """pending → running under this worker's lease (a target of a worker presumed dead is
        taken over, from its last checkpoint). LeaseHeld when another live worker runs it or
        it has been finished since it was listed."""
        with self._tx() as tx:
            row = self._get(tx, kind, target, lock=True)
            if row.status == "running":
                owner, expired = self._holder(tx, kind, target)
                if owner not in (None, self.store.worker):
                    if not expired:
                        raise LeaseHeld(f"{kind} target {target} is running under worker {owner}")
                    log.warning("target_taken_over", kind=kind, target=target, previous=owner)
            elif row.status != "pending":
                raise LeaseHeld(f"{kind} target {target} is {row.status}, not pending")
            self._lease(tx, kind, target)
            return self._get(tx, kind, target)

    def claim(self, kind: str) -> TargetRow | None:
        """Lease the first target of `kind` no live worker holds (pending, or its lease ran
        out) that no other worker is claiming at this instant (`SKIP LOCKED`)."""
        with self._tx() as tx:
            row = tx.execute(
                "SELECT target, lease_owner FROM enrich_targets WHERE study = ? AND kind = ? "
                f"AND (status = 'pending' OR (status = 'running' AND {_expired(tx)})) "
                f"ORDER BY target LIMIT 1{tx.dialect.skip_locked}",
                (self.scope, kind),
            ).fetchone()
            if row is None:
                return None
            target, previous = row
            if previous is not None:
                log.warning("target_taken_over", kind=kind, target=target, previous=previous)
            self._lease(tx, kind, target)
            return self._get(tx, kind, target)

    def running_elsewhere(self, kind: str) -> int:
        """Targets of `kind` other workers run under a live lease."""
        with self.store._read() as tx:
            (n,) = tx.one(
                "SELECT count(*) FROM enrich_targets WHERE study = ? AND kind = ? "
                f"AND status = 'running' AND lease_owner != ? AND NOT {_expired(tx)}",
                (self.scope, kind, self.store.worker),
            )
        return int(n)

    def heartbeat(self) -> list[str]:
        """Renew the lease of every target this worker runs; returns them."""
        with self._tx() as tx:
            return sorted(
                tx.column(
                    f"UPDATE enrich_targets SET lease_until = {tx.dialect.now} + ? "
                    "WHERE study = ? AND status = 'running' AND lease_owner = ? RETURNING target",
                    (self.store.lease_seconds, self.scope, self.store.worker),
                )
            )

    def checkpoint(
        self,
        kind: str,
        target: str,
        *,
        segment: str | None,
        seq: int,
        rows: int,
        cursor: int | None,
    ) -> None:
        """Record one page: its segment (if it had rows) and the cursor after it, together;
        renews the lease (LeaseLost if another worker took the target over)."""
        with self._tx() as tx:
            self._get(tx, kind, target, lock=True)
            self._check_lease(tx, kind, target)
            if segment is not None:
                tx.execute(
                    "INSERT INTO enrich_segments (study, path, kind, target, seq, rows) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (self.scope, segment, kind, target, seq, rows),
                )
            self._set(
                tx,
                kind,
                target,
                f"cursor = ?, pages = pages + 1, rows = rows + ?, "
                f"lease_until = {tx.dialect.now} + ?",
                cursor,
                rows,
                self.store.lease_seconds,
            )

    def _end(self, tx: Tx, kind: str, target: str, sql: str, *args: Any) -> None:
        """End this worker's run of the target (LeaseLost if it is no longer its): `sql` sets
        its outcome, and the lease goes."""
        self._get(tx, kind, target, lock=True)
        self._check_lease(tx, kind, target)
        self._set(tx, kind, target, f"{sql}, lease_owner = NULL, lease_until = NULL", *args)

    def finish(
        self,
        kind: str,
        target: str,
        replies: Sequence[tuple[str, int]] = (),
        *,
        fetched_at: float | None = None,
    ) -> None:
        """Done (as of `fetched_at`, the run's clock); `replies` (target key, comment id) become
        targets of their own, atomically."""
        now = time.time()
        with self._tx() as tx:
            self._end(
                tx, kind, target, "status = 'done', outcome = 'ok', fetched_at = ?", fetched_at
            )
            tx.executemany(
                "INSERT INTO enrich_targets "
                "(study, kind, target, parent, comment_id, status, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT DO NOTHING",
                [(self.scope, kind, key, target, cid, now) for key, cid in replies],
            )

    def note_task(self, kind: str, targets: Sequence[str], task_id: int) -> None:
        """A VCE category task was created for `targets` (this worker's): its id is their
        cursor until the task's rows are checkpointed, so a restart polls that task for
        exactly those targets instead of creating (and paying for) another."""
        with self._tx() as tx:
            for target in targets:
                if self._get(tx, kind, target, lock=True).status != "running":
                    raise LeaseLost(f"{kind} target {target} is no longer running here")
                self._check_lease(tx, kind, target)
                self._set(tx, kind, target, "cursor = ?", task_id)

    def finish_batch(
        self,
        kind: str,
        results: Sequence[tuple[str, str | None, int]],
        *,
        fetched_at: float | None = None,
    ) -> None:
        """One finished VCE category task, in one transaction: each (target, staged segment
        or None, rows) done, `ok` with rows or `empty` without (the task cannot say whether an
        account was refused or had nothing). The task is counted once, as its first target's
        page, so `pages` sums to the tasks a kind took."""
        with self._tx() as tx:
            for i, (target, segment, rows) in enumerate(results):
                if segment is not None:
                    tx.execute(
                        "INSERT INTO enrich_segments (study, path, kind, target, seq, rows) "
                        "VALUES (?, ?, ?, ?, 0, ?)",
                        (self.scope, segment, kind, target, rows),
                    )
                self._end(
                    tx,
                    kind,
                    target,
                    "status = 'done', outcome = ?, cursor = NULL, pages = ?, rows = ?, "
                    "fetched_at = ?",
                    "ok" if rows else "empty",
                    1 if i == 0 else 0,
                    rows,
                    fetched_at,
                )

    def _drop_segments(self, tx: Tx, kind: str, target: str) -> list[str]:
        return tx.column(
            "DELETE FROM enrich_segments WHERE study = ? AND kind = ? AND target = ? "
            "RETURNING path",
            (self.scope, kind, target),
        )

    def refuse(
        self,
        kind: str,
        target: str,
        verdict: str,
        message: str,
        *,
        fetched_at: float | None = None,
    ) -> list[str]:
        """The API refused the target (as of `fetched_at`): its outcome. Anything staged for it
        is dropped (returned so the caller can delete the files)."""
        with self._tx() as tx:
            self._end(
                tx,
                kind,
                target,
                "status = 'unavailable', outcome = ?, message = ?, rows = 0, fetched_at = ?",
                verdict,
                message,
                fetched_at,
            )
            return sorted(self._drop_segments(tx, kind, target))

    def fail(self, kind: str, target: str, error_kind: str, message: str, *, park: bool) -> None:
        """A failed attempt: back to pending (cursor kept), or `park` it as failed."""
        with self._tx() as tx:
            self._end(
                tx,
                kind,
                target,
                "status = ?, attempts = attempts + 1, outcome = ?, message = ?",
                "failed" if park else "pending",
                error_kind,
                message,
            )

    # -- segments and files --------------------------------------------------------------------

    def segments(self, kind: str, target: str | None = None) -> list[tuple[str, str, int]]:
        """(path, target, rows) of staged segments, by target and page."""
        rows = self._query(
            *narrowed(
                "SELECT path, target, rows FROM enrich_segments WHERE study = ? AND kind = ?",
                [self.scope, kind],
                {"target": target},
                "target, seq",
            )
        )
        return [(str(p), str(t), int(n)) for p, t, n in rows]

    def unpublished(self, kind: str) -> list[str]:
        """Done targets whose rows are not in the dataset yet."""
        return [
            str(r[0])
            for r in self._query(
                "SELECT target FROM enrich_targets WHERE study = ? AND kind = ? "
                "AND status = 'done' AND file IS NULL ORDER BY target",
                (self.scope, kind),
            )
        ]

    def publish(
        self,
        kind: str,
        files: Sequence[tuple[str, int]],
        targets: Sequence[str],
        *,
        replaced: Sequence[str] = (),
        refreshed: Sequence[str] = (),
    ) -> list[str]:
        """Record the dataset files holding `targets`' rows and forget their segments, in one
        transaction; returns the segment paths to delete. `replaced` files leave the dataset in
        the same transaction (their rows, less the `refreshed` targets', are in `files`), and
        the `refreshed` targets are no longer stale."""
        with self._tx() as tx:
            now = time.time()
            tx.executemany(
                "DELETE FROM enrich_files WHERE study = ? AND path = ? AND kind = ?",
                [(self.scope, p, kind) for p in replaced],
            )
            tx.executemany(
                "UPDATE enrich_targets SET stale = 0 WHERE study = ? AND kind = ? AND target = ?",
                [(self.scope, kind, t) for t in refreshed],
            )
            tx.executemany(
                "INSERT INTO enrich_files (study, path, kind, rows, committed_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(self.scope, path, kind, rows, now) for path, rows in files],
            )
            marker = files[0][0] if files else ""
            dropped: list[str] = []
            for t in targets:
                dropped += self._drop_segments(tx, kind, t)
                tx.execute(
                    "UPDATE enrich_targets SET file = ? WHERE study = ? AND kind = ? "
                    "AND target = ?",
                    (marker, self.scope, kind, t),
                )
        return dropped

    def files(self, kind: str) -> list[tuple[str, int]]:
        rows = self._query(
            "SELECT path, rows FROM enrich_files WHERE study = ? AND kind = ? ORDER BY path",
            (self.scope, kind),
        )
        return [(str(p), int(n)) for p, n in rows]

    def known_segments(self) -> set[str]:
        rows = self._query("SELECT path FROM enrich_segments WHERE study = ?", (self.scope,))
        return {str(r[0]) for r in rows}

    def summary(self, kind: str) -> KindSummary:
        with self.store._read() as tx:
            args = (self.scope, kind)
            targets, outcomes = (
                {
                    str(value): int(n)
                    for value, n in tx.all(
                        f"SELECT {column}, count(*) FROM enrich_targets WHERE study = ? "
                        f"AND kind = ? AND {column} IS NOT NULL GROUP BY {column}",
                        args,
                    )
                }
                for column in ("status", "outcome")
            )
            rows, pages, unsettled = tx.one(
                "SELECT coalesce(sum(rows), 0), coalesce(sum(pages), 0), count(*) FILTER "
                "(WHERE parent IS NULL AND status IN ('done', 'unavailable') "
                "AND fetched_at < settles_at) FROM enrich_targets WHERE study = ? AND kind = ?",
                args,
            )
            (files,) = tx.one(
                "SELECT count(*) FROM enrich_files WHERE study = ? AND kind = ?", args
            )
        return KindSummary(
            kind, targets, outcomes, int(rows), int(pages), int(files), int(unsettled)
        )

    def record_error(self, kind: str) -> None:
        with self._tx() as tx:
            tx.execute(
                "INSERT INTO enrich_errors (study, kind, count) VALUES (?, ?, 1) "
                "ON CONFLICT (study, kind) DO UPDATE SET count = enrich_errors.count + 1",
                (self.scope, kind),
            )

    # -- a state from before enrichments lived in the study's state ------------------------------

    def import_file(self, path: Path) -> bool:
        """Take in what an older harvester kept in its own file (`<state>.enrich.sqlite`):
        targets, segments, files, error counts and the followers pool's days; the file is then
        renamed `….imported`. Idempotent: a crash before the rename imports nothing twice."""
        if not path.exists():
            return False
        old = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = {
                name: old.execute(f"SELECT * FROM {name}").fetchall()
                for (name,) in old.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            cols = {
                name: [c[1] for c in old.execute(f"PRAGMA table_info({name})")] for name in tables
            }
        finally:
            old.close()
        with self._tx() as tx:
            for table in ("targets", "segments", "files", "errors"):
                names = ", ".join(cols.get(table, []))
                marks = ", ".join("?" * (len(cols.get(table, [])) + 1))
                tx.executemany(
                    f"INSERT INTO enrich_{table} (study, {names}) VALUES ({marks}) "
                    "ON CONFLICT DO NOTHING",
                    [(self.scope, *r) for r in tables.get(table, [])],
                )
            for day, requests, records, exhausted in tables.get("quota", []):
                tx.execute(
                    "INSERT INTO quota (ledger, day, requests, records, exhausted) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (self.quota.name, day, requests, records, bool(exhausted)),
                )
        path.rename(path.with_name(path.name + ".imported"))
        return True


def _expired(tx: Tx) -> str:
    """Whether a row's lease ran out (or it has none), on the database's clock."""
    return f"(lease_until IS NULL OR lease_until < {tx.dialect.now})"
