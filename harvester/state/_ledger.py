"""The quota ledger and the status summary of `SqliteState`.

The ledger counts what the API counts, per UTC day: a request is reserved before it is sent
(failed calls count too), records are settled after. `BEGIN IMMEDIATE` makes a reservation a
check-and-increment no other process can interleave with, so two runs cannot overshoot a cap.
"""

from __future__ import annotations

import sqlite3

from harvester.state._core import Core, utc_day
from harvester.state.base import ErrorCount, StatusSummary, Usage, WorkerUsage

__all__ = ["Ledger"]


class Ledger(Core):
    def _day(self, db: sqlite3.Connection, day: str) -> Usage:
        db.execute("INSERT INTO quota (day) VALUES (?) ON CONFLICT DO NOTHING", (day,))
        row = db.execute(
            "SELECT requests, records, exhausted FROM quota WHERE day = ?", (day,)
        ).fetchone()
        return Usage(day, int(row[0]), int(row[1]), bool(row[2]))

    def reserve(self, day: str, requests: int = 1, *, cap: int | None = None) -> bool:
        """Reserve `requests` on `day` if the day's caps allow; False means wait for 00:00 UTC.

        `cap` overrides the store's `daily_requests`; the store's `daily_records` also applies.
        """
        cap = self.daily_requests if cap is None else cap
        with self._tx() as db:
            used = self._day(db, day)
            if used.exhausted or (cap is not None and used.requests + requests > cap):
                return False
            if self.daily_records is not None and used.records >= self.daily_records:
                return False
            db.execute("UPDATE quota SET requests = requests + ? WHERE day = ?", (requests, day))
            return True

    def settle(self, day: str, *, records: int) -> None:
        """Count the records a reserved request delivered."""
        with self._tx() as db:
            self._day(db, day)
            db.execute("UPDATE quota SET records = records + ? WHERE day = ?", (records, day))

    def release(self, day: str, requests: int = 1) -> None:
        """Give back a reservation whose request was never sent."""
        with self._tx() as db:
            self._day(db, day)
            db.execute(
                "UPDATE quota SET requests = max(requests - ?, 0) WHERE day = ?", (requests, day)
            )

    def exhaust(self, day: str) -> None:
        """The API said the daily quota is spent: refuse reservations for the rest of `day`."""
        with self._tx() as db:
            self._day(db, day)
            db.execute("UPDATE quota SET exhausted = 1 WHERE day = ?", (day,))

    def usage(self, day: str) -> Usage:
        rows = self._query("SELECT requests, records, exhausted FROM quota WHERE day = ?", (day,))
        if not rows:
            return Usage(day, 0, 0, False)
        requests, records, exhausted = rows[0]
        return Usage(day, int(requests), int(records), bool(exhausted))

    def usage_by_worker(self, day: str) -> list[WorkerUsage]:
        """The day's use as one line: a SQLite study runs on one machine and keeps no worker
        names (a pool shared by workers needs PostgreSQL)."""
        used = self.usage(day)
        if not (used.requests or used.records):
            return []
        return [WorkerUsage(day, self.study, "", used.requests, used.records)]

    def quota_days(self) -> list[Usage]:
        rows = self._query("SELECT day, requests, records, exhausted FROM quota ORDER BY day")
        return [Usage(str(d), int(q), int(r), bool(x)) for d, q, r, x in rows]

    def error_hours(self) -> list[ErrorCount]:
        rows = self._query("SELECT hour, kind, count FROM error_hours ORDER BY hour, kind")
        return [ErrorCount(int(h), str(k), int(n)) for h, k, n in rows]

    def status(self, day: str | None = None) -> StatusSummary:
        """Counts for `harvester status`: a few indexed aggregates, fast at 50,000 shards."""
        by_status = {
            s: int(n) for s, n in self._query("SELECT status, count(*) FROM shards GROUP BY status")
        }
        plans, committed, records, pages, filtered = self._query(
            "SELECT sum(CASE WHEN parent_key IS NULL THEN 1 ELSE 0 END), count(committed_at), "
            "coalesce(sum(records), 0), coalesce(sum(pages), 0), coalesce(sum(filtered), 0) "
            "FROM shards"
        )[0]
        files, rows = self._query("SELECT count(*), coalesce(sum(rows), 0) FROM files")[0]
        errors = {k: int(n) for k, n in self._query("SELECT kind, count FROM errors ORDER BY kind")}
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
