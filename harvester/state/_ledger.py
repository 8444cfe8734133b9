"""A daily quota ledger in a state store: the study's (or its pool's), or a pool of its own.

The ledger counts what the API counts, per UTC day: a request is reserved before it is sent
(failed calls count too), records are settled after. A reservation reads the day's row with a
lock (PostgreSQL's `FOR UPDATE`; SQLite's `BEGIN IMMEDIATE` admits one writer) and increments
it in the same transaction, so no two workers, runs or studies interleave a check and an
increment and together overshoot a cap. Who used the day (study and worker) is kept beside,
for a study's share of a pool and for `harvester quota`.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Protocol

from harvester.state._sql import Tx
from harvester.state.base import Usage, WorkerUsage

__all__ = ["Ledger", "utc_day"]


def utc_day(ts: float | None = None) -> str:
    """The quota ledger's day: `YYYY-MM-DD` in UTC (quotas reset at 00:00 UTC)."""
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC).strftime("%Y-%m-%d")


class _Host(Protocol):
    """The store a ledger lives in."""

    worker: str

    @property
    def study(self) -> str: ...

    def _tx(self) -> AbstractContextManager[Tx]: ...

    def _read(self) -> AbstractContextManager[Tx]: ...


class Ledger:
    """The days of ledger `name`, capped at `daily_requests` and `daily_records` (None: no
    cap); with `share`, this study may take that fraction of each cap."""

    def __init__(
        self,
        host: _Host,
        name: str,
        *,
        daily_requests: int | None,
        daily_records: int | None,
        share: float | None = None,
    ) -> None:
        self.host = host
        self.name = name
        self.daily_requests = daily_requests
        self.daily_records = daily_records
        self.share = share

    def _day(self, tx: Tx, day: str) -> Usage:
        """The ledger's row for `day`, locked until the transaction ends."""
        tx.execute(
            "INSERT INTO quota (ledger, day) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (self.name, day),
        )
        requests, records, exhausted = tx.one(
            "SELECT requests, records, exhausted FROM quota WHERE ledger = ? AND day = ?"
            + tx.dialect.lock,
            (self.name, day),
        )
        return Usage(day, int(requests), int(records), bool(exhausted))

    def _add(self, tx: Tx, day: str, *, requests: int = 0, records: int = 0) -> None:
        """Count `requests` (negative: given back) and `records` on the day and for this
        study's worker."""
        greatest = tx.dialect.greatest
        tx.execute(
            f"UPDATE quota SET requests = {greatest}(requests + ?, 0), records = records + ? "
            "WHERE ledger = ? AND day = ?",
            (requests, records, self.name, day),
        )
        tx.execute(
            "INSERT INTO quota_use (ledger, day, study, worker, requests, records) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (ledger, day, study, worker) DO UPDATE "
            f"SET requests = {greatest}(quota_use.requests + excluded.requests, 0), "
            "records = quota_use.records + excluded.records",
            (self.name, day, self.host.study, self.host.worker, requests, records),
        )

    def reserve(self, day: str, requests: int = 1, *, cap: int | None = None) -> bool:
        """Reserve `requests` on `day` if the day's caps allow; False means wait for 00:00 UTC.

        `cap` overrides the ledger's `daily_requests`; its `daily_records` also applies. In a
        pool, the caps are the pool's and `share` caps this study's part of them.
        """
        cap = self.daily_requests if cap is None else cap
        with self.host._tx() as tx:
            used = self._day(tx, day)
            if used.exhausted or (cap is not None and used.requests + requests > cap):
                return False
            if self.daily_records is not None and used.records >= self.daily_records:
                return False
            if self.share is not None and not self._within_share(tx, day, requests, cap):
                return False
            self._add(tx, day, requests=requests)
            return True

    def _within_share(self, tx: Tx, day: str, requests: int, cap: int | None) -> bool:
        assert self.share is not None
        mine_requests, mine_records = tx.one(
            "SELECT coalesce(sum(requests), 0), coalesce(sum(records), 0) FROM quota_use "
            "WHERE ledger = ? AND day = ? AND study = ?",
            (self.name, day, self.host.study),
        )
        if cap is not None and mine_requests + requests > int(cap * self.share):
            return False
        return not (
            self.daily_records is not None and mine_records >= int(self.daily_records * self.share)
        )

    def settle(self, day: str, *, records: int) -> None:
        """Count the records a reserved request delivered."""
        with self.host._tx() as tx:
            self._day(tx, day)
            self._add(tx, day, records=records)

    def release(self, day: str, requests: int = 1) -> None:
        """Give back a reservation whose request was never sent."""
        with self.host._tx() as tx:
            self._day(tx, day)
            self._add(tx, day, requests=-requests)

    def exhaust(self, day: str) -> None:
        """The API said the daily quota is spent: refuse reservations for the rest of `day`."""
        with self.host._tx() as tx:
            self._day(tx, day)
            tx.execute(
                "UPDATE quota SET exhausted = TRUE WHERE ledger = ? AND day = ?", (self.name, day)
            )

    def usage(self, day: str) -> Usage:
        with self.host._read() as tx:
            row = tx.execute(
                "SELECT requests, records, exhausted FROM quota WHERE ledger = ? AND day = ?",
                (self.name, day),
            ).fetchone()
        if row is None:
            return Usage(day, 0, 0, False)
        return Usage(day, int(row[0]), int(row[1]), bool(row[2]))

    def days(self) -> list[Usage]:
        """Every day of the ledger, oldest first (a pool's, shared with its other studies)."""
        with self.host._read() as tx:
            rows = tx.all(
                "SELECT day, requests, records, exhausted FROM quota WHERE ledger = ? ORDER BY day",
                (self.name,),
            )
        return [Usage(str(d), int(q), int(r), bool(x)) for d, q, r, x in rows]

    def usage_by_study(self) -> list[WorkerUsage]:
        """The ledger's use by day and study, workers summed, oldest first (every study of a
        pool); `worker` is empty."""
        with self.host._read() as tx:
            rows = tx.all(
                "SELECT day, study, sum(requests), sum(records) FROM quota_use WHERE ledger = ? "
                "GROUP BY day, study HAVING sum(requests) <> 0 OR sum(records) <> 0 "
                "ORDER BY day, study",
                (self.name,),
            )
        return [WorkerUsage(str(d), str(s), "", int(q), int(r)) for d, s, q, r in rows]

    def usage_by_worker(self, day: str) -> list[WorkerUsage]:
        """The ledger's use on `day` by study and worker (every study of a pool)."""
        with self.host._read() as tx:
            rows = tx.all(
                "SELECT study, worker, requests, records FROM quota_use "
                "WHERE ledger = ? AND day = ? ORDER BY study, worker",
                (self.name, day),
            )
        return [WorkerUsage(day, s, w, int(q), int(r)) for s, w, q, r in rows]
