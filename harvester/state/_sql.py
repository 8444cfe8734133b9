"""The SQL both state stores speak: one text per query, rendered per database by a `Dialect`.

Queries are written once, in the SQL SQLite and PostgreSQL share, with `?` placeholders. What
differs is small and named here: the placeholder style, the row lock a read-then-write takes
(PostgreSQL's `FOR UPDATE`; SQLite has one writer, whose `BEGIN IMMEDIATE` already serialises
every write transaction) and a claim's `SKIP LOCKED`, the two-argument maximum, the database's
clock, and how a list is passed as one parameter.
A `Tx` is one open transaction (or read) on either database, seen through that dialect.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from harvester._exceptions import StateError

__all__ = ["POSTGRES", "SQLITE", "Cursor", "Dialect", "Reader", "Tx", "narrowed"]


class Cursor(Protocol):
    """What `sqlite3.Cursor` and `psycopg.Cursor` both are, as far as the stores need."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Raw(Protocol):
    """A `sqlite3.Connection` or a `psycopg.Cursor`: both execute a statement in place."""

    def execute(self, sql: Any, args: Any = ..., /) -> Any: ...

    def executemany(self, sql: Any, rows: Iterable[Any], /) -> Any: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    #: Appended to a read whose rows the transaction goes on to change.
    lock: str
    #: The larger of two values (SQLite's scalar `max`, PostgreSQL's `greatest`).
    greatest: str
    #: `column IN` a list passed as one parameter (see `array`).
    in_list: str
    #: The database's clock in epoch seconds: leases of workers on different machines compare
    #: on one clock.
    now: str
    #: Appended to a claim: lock the row, passing over rows another worker is claiming (SQLite
    #: has one writer, and no other worker to pass over).
    skip_locked: str

    def sql(self, text: str) -> str:
        """`text` with this database's placeholders."""
        return _pyformat(text) if self.name == "postgres" else text

    def array(self, values: Iterable[Any]) -> Any:
        """A list as the one parameter `in_list` reads."""
        return list(values) if self.name == "postgres" else json.dumps(list(values))


@functools.lru_cache(maxsize=512)
def _pyformat(text: str) -> str:
    return text.replace("%", "%%").replace("?", "%s")


SQLITE = Dialect(
    "sqlite",
    lock="",
    greatest="max",
    in_list="IN (SELECT value FROM json_each(?))",
    now="((julianday('now') - 2440587.5) * 86400.0)",
    skip_locked="",
)
POSTGRES = Dialect(
    "postgres",
    lock=" FOR UPDATE",
    greatest="greatest",
    in_list="= ANY(?)",
    now="extract(epoch from clock_timestamp())",
    skip_locked=" FOR UPDATE SKIP LOCKED",
)


def narrowed(
    sql: str, args: Sequence[Any], equal: dict[str, Any], order: str
) -> tuple[str, list[Any]]:
    """`sql` (ending in a WHERE clause) narrowed to `column = value` for each value given
    (None: any), then ordered by `order`."""
    out = list(args)
    for column, value in equal.items():
        if value is not None:
            sql += f" AND {column} = ?"
            out.append(value)
    return f"{sql} ORDER BY {order}", out


class Tx:
    """One transaction (or one read) on a store's database, in the shared SQL."""

    __slots__ = ("dialect", "raw")

    def __init__(self, raw: Raw, dialect: Dialect) -> None:
        self.raw = raw
        self.dialect = dialect

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        cur: Cursor = self.raw.execute(self.dialect.sql(sql), tuple(args))
        return cur

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = [tuple(r) for r in rows]
        if batch:
            self.raw.executemany(self.dialect.sql(sql), batch)

    def all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return self.execute(sql, args).fetchall()

    def column(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """The first column of every row."""
        return [r[0] for r in self.all(sql, args)]

    def one(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...]:
        """The one row an aggregate or a locked read of a known row always returns."""
        row = self.execute(sql, args).fetchone()
        if row is None:
            raise StateError(f"the state database returned no row for: {sql.split()[0]}")
        return tuple(row)


class Reader:
    """A store's reads: `_read` gives one consistent read as a `Tx`."""

    def _read(self) -> AbstractContextManager[Tx]:
        raise NotImplementedError

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._read() as tx:
            return tx.all(sql, args)
