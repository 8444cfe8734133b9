"""The public Research API's query form: `{"and": [...], "or": [...], "not": [...]}`."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from harvester._exceptions import QueryError
from harvester.fields import REST_CONDITION_FIELDS, REST_OPERATIONS, VIDEO_LENGTHS, as_int
from harvester.query._common import (
    Predicate,
    Record,
    _check_arity,
    _check_int,
    _compare,
    _lowered_list,
    _no_unknown_keys,
    _parse_values,
)


@dataclass(frozen=True, slots=True)
class RestCondition:
    operation: str
    field_name: str
    values: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "field_name": self.field_name,
            "field_values": list(self.values),
        }


@dataclass(frozen=True, slots=True)
class RestQuery:
    """The public API's query: all of `and`, at least one of `or` (if any), none of `not`."""

    and_: tuple[RestCondition, ...] = ()
    or_: tuple[RestCondition, ...] = ()
    not_: tuple[RestCondition, ...] = ()
    _predicate: Predicate | None = field(default=None, compare=False, repr=False, hash=False)

    def to_json(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for key, conds in (("and", self.and_), ("or", self.or_), ("not", self.not_)):
            if conds:
                out[key] = [c.to_json() for c in conds]
        return out

    def fingerprint_json(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    def is_empty(self) -> bool:
        return not (self.and_ or self.or_ or self.not_)

    def for_dates(self, start_date: str, last_date: str) -> RestQuery:
        """A query the API accepts: it needs one non-empty list, so an empty query gets a
        create_date range that restates the window (YYYYMMDD, inclusive)."""
        if not self.is_empty():
            return self
        return RestQuery(
            and_=(
                RestCondition("GTE", "create_date", (start_date,)),
                RestCondition("LTE", "create_date", (last_date,)),
            )
        )

    def matches(self, record: Record) -> bool:
        pred = self._predicate
        if pred is None:
            pred = self.predicate(_compile_rest_condition)
            object.__setattr__(self, "_predicate", pred)
        return pred(record)

    def predicate(self, condition: Callable[[RestCondition], Predicate]) -> Predicate:
        """The query's rule (all of `and`, one of `or` if any, none of `not`) over what
        `condition` makes of each condition: exact here, approximate where the public API
        matches strings loosely (the simulator)."""
        ands = [condition(c) for c in self.and_]
        ors = [condition(c) for c in self.or_]
        nots = [condition(c) for c in self.not_]

        def pred(r: Record) -> bool:
            return (
                all(p(r) for p in ands)
                and (not ors or any(p(r) for p in ors))
                and not any(p(r) for p in nots)
            )

        return pred


_REST_STRING_OPS = frozenset({"EQ", "IN"})


def parse_rest_query(obj: object) -> RestQuery:
    """Validate the public API's query form ({"and": [...], "or": [...], "not": [...]})."""
    if not isinstance(obj, Mapping):
        raise QueryError('query must be a table with "and", "or" and/or "not" lists')
    _no_unknown_keys(obj, {"and", "or", "not"}, "query")
    lists: dict[str, tuple[RestCondition, ...]] = {}
    for key in ("and", "or", "not"):
        raw = obj.get(key, [])
        if not isinstance(raw, list):
            raise QueryError(f"query.{key} must be a list of conditions")
        lists[key] = tuple(_parse_rest_condition(c, f"query.{key}[{i}]") for i, c in enumerate(raw))
    q = RestQuery(lists["and"], lists["or"], lists["not"])
    if q.is_empty():
        raise QueryError('query has no conditions; give at least one in "and", "or" or "not"')
    return q


def _parse_rest_condition(c: object, where: str) -> RestCondition:
    if not isinstance(c, Mapping):
        raise QueryError(f"{where} must be a table with operation, field_name and field_values")
    _no_unknown_keys(c, {"operation", "field_name", "field_values"}, where)
    fname_raw = c.get("field_name")
    fname = fname_raw if isinstance(fname_raw, str) else ""
    kind = REST_CONDITION_FIELDS.get(fname)
    if kind is None:
        raise QueryError(
            f"{where}: unknown field_name {fname_raw!r}; the public API's fields are: "
            + ", ".join(REST_CONDITION_FIELDS)
        )
    op_raw = c.get("operation")
    op = op_raw.upper() if isinstance(op_raw, str) else ""
    allowed = REST_OPERATIONS if kind in ("int64", "date") else _REST_STRING_OPS
    if op not in allowed:
        raise QueryError(
            f"{where}: operation {op_raw!r} is not allowed for {fname}; use "
            + ", ".join(sorted(allowed))
        )
    values = _parse_values(c.get("field_values"), where)
    _check_arity(op, values, where)
    if kind == "int64":
        values = tuple(str(_check_int(v, where, fname)) for v in values)
    elif kind == "date":
        for v in values:
            try:
                datetime.strptime(v, "%Y%m%d")
            except ValueError:
                raise QueryError(
                    f'{where}: create_date {v!r} is not a date; use YYYYMMDD like "20230115"'
                ) from None
    elif kind == "length":
        for v in values:
            if v.upper() not in VIDEO_LENGTHS:
                raise QueryError(
                    f"{where}: video_length {v!r} is not one of " + ", ".join(VIDEO_LENGTHS)
                )
        values = tuple(v.upper() for v in values)
    return RestCondition(op, fname, values)


def _create_date(r: Record) -> int | None:
    t = as_int(r.get("create_time"))
    if t is None:
        return None
    return int(datetime.fromtimestamp(t, UTC).strftime("%Y%m%d"))


def _length_bucket(r: Record) -> str | None:
    d = as_int(r.get("video_duration"))
    if d is None:
        return None
    for name, (lo, hi) in VIDEO_LENGTHS.items():
        if lo <= d < hi:
            return name
    return None


def _compile_rest_condition(c: RestCondition) -> Predicate:
    name, vals = c.field_name, c.values
    if name == "create_date":
        return _compare(c.operation, [int(v) for v in vals], _create_date)
    if name in ("video_id", "music_id", "view_count", "comment_count"):
        key = "id" if name == "video_id" else name
        return _compare(c.operation, [int(v) for v in vals], lambda r: as_int(r.get(key)))
    wanted = frozenset(v.lower() for v in vals)
    if name == "hashtag_name":
        return lambda r: not wanted.isdisjoint(_lowered_list(r.get("hashtag_names")))
    if name == "effect_id":
        return lambda r: not wanted.isdisjoint(_lowered_list(r.get("effect_ids")))
    if name == "keyword":

        def kw(r: Record) -> bool:
            d = r.get("video_description")
            return isinstance(d, str) and any(w in d.lower() for w in wanted)

        return kw
    if name == "video_length":
        exact = frozenset(vals)
        return lambda r: _length_bucket(r) in exact
    exact = frozenset(vals)
    return lambda r: r.get(name) in exact  # username, region_code
