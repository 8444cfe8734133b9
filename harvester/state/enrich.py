"""`EnrichState`: the durable memory of a study's enrichments, one SQLite file beside its state.

Per kind, every target (a video id, a username, a playlist id, or a comment whose replies are
wanted) with its status, checkpointed cursor, staged segments and the dataset file its rows went
to; the followers/following pool's own daily quota ledger; error counts. As in `SqliteState`,
every operation is one short transaction, and a page's segment is recorded in the same
transaction that advances its target's cursor.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harvester._exceptions import StateError
from harvester.state._core import SqliteFile
from harvester.state._sql import Tx
from harvester.state.base import Usage

__all__ = ["STATUSES", "EnrichState", "KindSummary", "TargetRow", "enrich_state_path"]

#: A target's statuses as `status` and the report show them (a running one is pending).
STATUSES = ("done", "pending", "unavailable", "failed")


def enrich_state_path(state_path: Path) -> Path:
    """The enrichment state beside the study's own (`<state>.enrich.sqlite`)."""
    return state_path.with_name(state_path.name + ".enrich.sqlite")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS targets (
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    parent TEXT,
    comment_id BIGINT,
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'running', 'done', 'unavailable', 'failed')),
    cursor BIGINT,
    pages INTEGER NOT NULL DEFAULT 0,
    rows BIGINT NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    outcome TEXT,
    message TEXT,
    file TEXT,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (kind, target)
);
CREATE INDEX IF NOT EXISTS targets_status ON targets (kind, status);
CREATE TABLE IF NOT EXISTS segments (
    path TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    seq INTEGER NOT NULL,
    rows BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS segments_target ON segments (kind, target);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    rows BIGINT NOT NULL,
    committed_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS quota (
    day TEXT PRIMARY KEY,
    requests BIGINT NOT NULL DEFAULT 0,
    records BIGINT NOT NULL DEFAULT 0,
    exhausted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS errors (
    kind TEXT PRIMARY KEY,
    count BIGINT NOT NULL
)
"""


#: Version 2: when a target's counts settle (its newest video's creation plus `settle_days`),
#: when it was last fetched, and whether the dataset still holds rows of an earlier fetch that
#: its next publication replaces (a refresh of a target not settled when it was fetched).
_V2 = (
    "ALTER TABLE targets ADD COLUMN settles_at DOUBLE PRECISION",
    "ALTER TABLE targets ADD COLUMN fetched_at DOUBLE PRECISION",
    "ALTER TABLE targets ADD COLUMN stale INTEGER NOT NULL DEFAULT 0",
)
VERSION = 2


def _create(tx: Tx, version: int) -> None:
    if version < 1:
        # A file from before versions were kept has these tables already.
        for statement in _SCHEMA.split(";"):
            tx.execute(statement)
    if version < 2:
        for statement in _V2:
            tx.execute(statement)


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


class EnrichState(SqliteFile):
    """The enrichment state of one study (thread-safe; the study's run lock covers it)."""

    def __init__(self, path: Path | str, *, daily_requests: int, daily_records: int) -> None:
        self.daily_requests = daily_requests
        self.daily_records = daily_records
        self._connect(path, "enrichment state", VERSION, _create)

    # -- targets -------------------------------------------------------------------------------

    def add_targets(
        self, kind: str, targets: Iterable[str], settles: Mapping[str, float] | None = None
    ) -> int:
        """Add targets not yet known (known ones keep their status); returns how many were new.

        `settles` gives a target's settling time (its newest video's creation plus the study's
        `settle_days`); a known target's moves later when a newer video gives it.
        """
        now = time.time()
        settles = settles or {}
        with self._tx() as db:
            count = "SELECT count(*) FROM targets WHERE kind = ?"
            (before,) = db.one(count, (kind,))
            db.executemany(
                "INSERT INTO targets (kind, target, status, updated_at, settles_at) "
                "VALUES (?, ?, 'pending', ?, ?) ON CONFLICT (kind, target) DO UPDATE SET "
                "settles_at = max(coalesce(targets.settles_at, 0), excluded.settles_at) "
                "WHERE excluded.settles_at IS NOT NULL",
                [(kind, t, now, settles.get(t)) for t in targets],
            )
            (after,) = db.one(count, (kind,))
            return int(after - before)

    def reopen_unsettled(self, kind: str, now: float) -> tuple[list[str], list[str]]:
        """Open again every fetched target whose counts had not settled when it was fetched,
        last fetched on an earlier UTC day than `now`'s: its cursor and counts start over, its
        reply targets are forgotten, and it is marked stale when the dataset holds its rows
        (its next publication replaces them). Returns (targets reopened, staged segment paths
        of forgotten replies, to delete)."""
        day = int(now // 86_400)
        with self._tx() as db:
            due = db.column(
                "SELECT target FROM targets WHERE kind = ? AND parent IS NULL "
                "AND status IN ('done', 'unavailable') AND settles_at IS NOT NULL "
                "AND fetched_at IS NOT NULL AND fetched_at < settles_at "
                "AND CAST(fetched_at / 86400 AS INTEGER) < ? ORDER BY target",
                (kind, day),
            )
            dropped: list[str] = []
            for t in due:
                dropped += db.column(
                    "SELECT s.path FROM segments s JOIN targets c "
                    "ON c.kind = s.kind AND c.target = s.target WHERE c.kind = ? AND c.parent = ?",
                    (kind, t),
                )
                db.execute(
                    "DELETE FROM segments WHERE kind = ? AND target IN "
                    "(SELECT target FROM targets WHERE kind = ? AND parent = ?)",
                    (kind, kind, t),
                )
                db.execute("DELETE FROM targets WHERE kind = ? AND parent = ?", (kind, t))
                self._set(
                    db,
                    kind,
                    t,
                    "status = 'pending', cursor = NULL, pages = 0, rows = 0, attempts = 0, "
                    "outcome = NULL, message = NULL, "
                    "stale = CASE WHEN file IS NOT NULL THEN 1 ELSE stale END, file = NULL",
                )
        return [str(t) for t in due], [str(p) for p in dropped]

    def stale(self, kind: str) -> list[str]:
        """Fetched again, and the dataset still holds rows of the earlier fetch to replace."""
        return [
            str(r[0])
            for r in self._query(
                "SELECT target FROM targets WHERE kind = ? AND stale = 1 "
                "AND status IN ('done', 'unavailable') ORDER BY target",
                (kind,),
            )
        ]

    def target(self, kind: str, target: str) -> TargetRow:
        rows = self._query(
            f"SELECT {_COLS} FROM targets WHERE kind = ? AND target = ?", (kind, target)
        )
        if not rows:
            raise StateError(f"unknown {kind} target {target!r}")
        return TargetRow(*rows[0])

    def targets(self, kind: str, status: str | None = None) -> list[TargetRow]:
        sql = f"SELECT {_COLS} FROM targets WHERE kind = ?"
        args: list[Any] = [kind]
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        return [TargetRow(*r) for r in self._query(sql + " ORDER BY target", args)]

    def reset_running(self) -> int:
        """Targets a killed run left running go back to pending (their cursor is kept)."""
        with self._tx() as db:
            cur = db.execute("UPDATE targets SET status = 'pending' WHERE status = 'running'")
            return int(cur.rowcount)

    def retry_failed(self, kind: str) -> int:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE targets SET status = 'pending', attempts = 0 "
                "WHERE kind = ? AND status = 'failed'",
                (kind,),
            )
            return int(cur.rowcount)

    def _set(self, db: Tx, kind: str, target: str, sql: str, *args: Any) -> None:
        cur = db.execute(
            f"UPDATE targets SET {sql}, updated_at = ? WHERE kind = ? AND target = ?",
            (*args, time.time(), kind, target),
        )
        if cur.rowcount != 1:
            raise StateError(f"unknown {kind} target {target!r}")

    def start(self, kind: str, target: str) -> TargetRow:
        with self._tx() as db:
            self._set(db, kind, target, "status = 'running'")
        return self.target(kind, target)

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
        """Record one page: its segment (if it had rows) and the cursor after it, together."""
        with self._tx() as db:
            if segment is not None:
                db.execute(
                    "INSERT INTO segments (path, kind, target, seq, rows) VALUES (?, ?, ?, ?, ?)",
                    (segment, kind, target, seq, rows),
                )
            self._set(
                db, kind, target, "cursor = ?, pages = pages + 1, rows = rows + ?", cursor, rows
            )

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
        with self._tx() as db:
            self._set(
                db, kind, target, "status = 'done', outcome = 'ok', fetched_at = ?", fetched_at
            )
            db.executemany(
                "INSERT INTO targets (kind, target, parent, comment_id, status, updated_at) "
                "VALUES (?, ?, ?, ?, 'pending', ?) ON CONFLICT DO NOTHING",
                [(kind, key, target, cid, now) for key, cid in replies],
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
        with self._tx() as db:
            dropped = db.column(
                "SELECT path FROM segments WHERE kind = ? AND target = ?", (kind, target)
            )
            db.execute("DELETE FROM segments WHERE kind = ? AND target = ?", (kind, target))
            self._set(
                db,
                kind,
                target,
                "status = 'unavailable', outcome = ?, message = ?, rows = 0, fetched_at = ?",
                verdict,
                message,
                fetched_at,
            )
        return dropped

    def fail(self, kind: str, target: str, error_kind: str, message: str, *, park: bool) -> None:
        """A failed attempt: back to pending (cursor kept), or `park` it as failed."""
        with self._tx() as db:
            status = "failed" if park else "pending"
            self._set(
                db,
                kind,
                target,
                "status = ?, attempts = attempts + 1, outcome = ?, message = ?",
                status,
                error_kind,
                message,
            )

    def segments(self, kind: str, target: str | None = None) -> list[tuple[str, str, int]]:
        """(path, target, rows) of staged segments, by target and page."""
        sql = "SELECT path, target, rows FROM segments WHERE kind = ?"
        args: list[Any] = [kind]
        if target is not None:
            sql += " AND target = ?"
            args.append(target)
        return [
            (str(p), str(t), int(n)) for p, t, n in self._query(sql + " ORDER BY target, seq", args)
        ]

    def unpublished(self, kind: str) -> list[str]:
        """Done targets whose rows are not in the dataset yet."""
        return [
            str(r[0])
            for r in self._query(
                "SELECT target FROM targets WHERE kind = ? AND status = 'done' AND file IS NULL "
                "ORDER BY target",
                (kind,),
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
        with self._tx() as db:
            now = time.time()
            db.executemany(
                "DELETE FROM files WHERE path = ? AND kind = ?", [(p, kind) for p in replaced]
            )
            db.executemany(
                "INSERT INTO files (path, kind, rows, committed_at) VALUES (?, ?, ?, ?)",
                [(path, kind, rows, now) for path, rows in files],
            )
            db.executemany(
                "UPDATE targets SET stale = 0 WHERE kind = ? AND target = ?",
                [(kind, t) for t in refreshed],
            )
            marker = files[0][0] if files else ""
            dropped: list[str] = []
            for t in targets:
                dropped += db.column(
                    "SELECT path FROM segments WHERE kind = ? AND target = ?", (kind, t)
                )
                db.execute("DELETE FROM segments WHERE kind = ? AND target = ?", (kind, t))
                db.execute(
                    "UPDATE targets SET file = ? WHERE kind = ? AND target = ?", (marker, kind, t)
                )
        return dropped

    def files(self, kind: str) -> list[tuple[str, int]]:
        return [
            (str(p), int(n))
            for p, n in self._query(
                "SELECT path, rows FROM files WHERE kind = ? ORDER BY path", (kind,)
            )
        ]

    def known_segments(self) -> set[str]:
        return {str(r[0]) for r in self._query("SELECT path FROM segments")}

    def summary(self, kind: str) -> KindSummary:
        targets = {
            str(s): int(n)
            for s, n in self._query(
                "SELECT status, count(*) FROM targets WHERE kind = ? GROUP BY status", (kind,)
            )
        }
        outcomes = {
            str(o): int(n)
            for o, n in self._query(
                "SELECT outcome, count(*) FROM targets WHERE kind = ? AND outcome IS NOT NULL "
                "GROUP BY outcome",
                (kind,),
            )
        }
        rows, pages = self._query(
            "SELECT coalesce(sum(rows), 0), coalesce(sum(pages), 0) FROM targets WHERE kind = ?",
            (kind,),
        )[0]
        (files,) = self._query("SELECT count(*) FROM files WHERE kind = ?", (kind,))[0]
        (unsettled,) = self._query(
            "SELECT count(*) FROM targets WHERE kind = ? AND parent IS NULL "
            "AND status IN ('done', 'unavailable') AND fetched_at < settles_at",
            (kind,),
        )[0]
        return KindSummary(
            kind, targets, outcomes, int(rows), int(pages), int(files), int(unsettled)
        )

    # -- the followers/following pool's ledger --------------------------------------------------

    def _day(self, db: Tx, day: str) -> Usage:
        db.execute("INSERT INTO quota (day) VALUES (?) ON CONFLICT DO NOTHING", (day,))
        row = db.execute(
            "SELECT requests, records, exhausted FROM quota WHERE day = ?", (day,)
        ).fetchone()
        return Usage(day, int(row[0]), int(row[1]), bool(row[2]))

    def reserve(self, day: str, requests: int = 1) -> bool:
        with self._tx() as db:
            used = self._day(db, day)
            if used.exhausted or used.requests + requests > self.daily_requests:
                return False
            if used.records >= self.daily_records:
                return False
            db.execute("UPDATE quota SET requests = requests + ? WHERE day = ?", (requests, day))
            return True

    def settle(self, day: str, *, records: int) -> None:
        with self._tx() as db:
            self._day(db, day)
            db.execute("UPDATE quota SET records = records + ? WHERE day = ?", (records, day))

    def exhaust(self, day: str) -> None:
        with self._tx() as db:
            self._day(db, day)
            db.execute("UPDATE quota SET exhausted = 1 WHERE day = ?", (day,))

    def usage(self, day: str) -> Usage:
        with self._tx() as db:
            return self._day(db, day)

    def record_error(self, kind: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO errors (kind, count) VALUES (?, 1) "
                "ON CONFLICT (kind) DO UPDATE SET count = count + 1",
                (kind,),
            )
