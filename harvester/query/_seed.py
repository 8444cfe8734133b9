"""The seed form: the Research Query Service's `condition_groups`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from harvester._exceptions import QueryError
from harvester.fields import CATALOGUE, Scalar, as_int
from harvester.query._common import (
    Predicate,
    Record,
    _check_arity,
    _check_int,
    _check_like,
    _compare,
    _lowered_list,
    _no_unknown_keys,
    _parse_values,
)


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    operator: str  # upper case
    values: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"field": self.field, "operator": self.operator, "field_values": list(self.values)}

    def __str__(self) -> str:
        vals = self.values[0] if len(self.values) == 1 else list(self.values)
        return f"{self.field} {self.operator} {vals!r}"


@dataclass(frozen=True, slots=True)
class ConditionGroup:
    operator: Literal["and", "or", "not"]
    conditions: tuple[Condition, ...]

    def to_json(self) -> dict[str, Any]:
        return {"operator": self.operator, "conditions": [c.to_json() for c in self.conditions]}


@dataclass(frozen=True, slots=True)
class SeedQuery:
    """A list of condition groups; a record matches when every group holds."""

    groups: tuple[ConditionGroup, ...] = ()
    _predicate: Predicate | None = field(default=None, compare=False, repr=False, hash=False)

    def to_json(self) -> list[dict[str, Any]]:
        return [g.to_json() for g in self.groups]

    def fingerprint_json(self) -> str:
        """Canonical JSON: the same query always gives the same text."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    def matches(self, record: Record) -> bool:
        pred = self._predicate
        if pred is None:
            pred = _compile_seed(self.groups)
            object.__setattr__(self, "_predicate", pred)
        return pred(record)

    def with_window(self, start: int, end: int) -> SeedQuery:
        """This query restricted to create_time in [start, end): how an RQS shard is asked."""
        window = ConditionGroup(
            "and",
            (
                Condition("create_time", "GTE", (str(start),)),
                Condition("create_time", "LT", (str(end),)),
            ),
        )
        return SeedQuery((*self.groups, window))

    def time_bounds(self) -> tuple[int | None, int | None]:
        """The [lo, hi) create_time range that the `and` groups restrict records to."""
        lo: int | None = None
        hi: int | None = None
        for group in self.groups:
            if group.operator != "and":
                continue
            for c in group.conditions:
                if c.field != "create_time":
                    continue
                nums = [int(v) for v in c.values]
                cl, ch = _bounds_of(c.operator, nums)
                if cl is not None:
                    lo = cl if lo is None else max(lo, cl)
                if ch is not None:
                    hi = ch if hi is None else min(hi, ch)
        return lo, hi

    def __bool__(self) -> bool:
        return bool(self.groups)


def _bounds_of(op: str, nums: list[int]) -> tuple[int | None, int | None]:
    if op in ("EQ", "IN"):
        return min(nums), max(nums) + 1
    return {
        "GT": (nums[0] + 1, None),
        "GTE": (nums[0], None),
        "LT": (None, nums[0]),
        "LTE": (None, nums[0] + 1),
    }[op]


def parse_seed_query(obj: object) -> SeedQuery:
    """Validate the seed's `condition_groups` (a list of groups) into a SeedQuery."""
    if obj is None:
        return SeedQuery()
    if not isinstance(obj, list):
        raise QueryError(
            "condition_groups must be a list of groups like "
            '[{operator = "and", conditions = [...]}]'
        )
    groups = []
    for gi, g in enumerate(obj):
        where = f"condition_groups[{gi}]"
        if not isinstance(g, Mapping):
            raise QueryError(f"{where} must be a table with 'operator' and 'conditions'")
        _no_unknown_keys(g, {"operator", "conditions"}, where)
        gop = g.get("operator")
        if not isinstance(gop, str) or gop.lower() not in ("and", "or", "not"):
            raise QueryError(f'{where}.operator is {gop!r}; use one of "and", "or", "not"')
        conds = g.get("conditions")
        if not isinstance(conds, list) or not conds:
            raise QueryError(f"{where}.conditions must be a non-empty list of conditions")
        parsed = tuple(
            _parse_condition(c, f"{where}.conditions[{ci}]") for ci, c in enumerate(conds)
        )
        groups.append(ConditionGroup(gop.lower(), parsed))  # type: ignore[arg-type]
    return SeedQuery(tuple(groups))


def _parse_condition(c: object, where: str) -> Condition:
    if not isinstance(c, Mapping):
        raise QueryError(f"{where} must be a table with field, operator and field_values")
    _no_unknown_keys(c, {"field", "operator", "field_values"}, where)
    fname = c.get("field")
    if not isinstance(fname, str) or not fname:
        raise QueryError(f'{where}.field is missing; name a field like "region_code"')
    spec = CATALOGUE.get(fname)
    if spec is None or not spec.operators:
        conds = sorted(n for n, f in CATALOGUE.items() if f.operators)
        raise QueryError(
            f"{where}: unknown condition field {fname!r}; condition fields are: {', '.join(conds)}"
        )
    op_raw = c.get("operator")
    if not isinstance(op_raw, str):
        raise QueryError(
            f"{where}.operator is missing; allowed for {fname}: "
            + ", ".join(sorted(spec.operators))
        )
    op = op_raw.upper()
    if op not in spec.operators:
        raise QueryError(
            f"{where}: operator {op_raw!r} is not allowed for {fname}; "
            "use " + ", ".join(sorted(spec.operators))
        )
    values = _parse_values(c.get("field_values"), where)
    _check_arity(op, values, where)
    if spec.type == Scalar("int64"):
        values = tuple(str(_check_int(v, where, fname)) for v in values)
    if op == "LIKE":
        _check_like(values[0], where)
    return Condition(fname, op, values)


# --------------------------------------------------------------------------- evaluation


def _like_regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def _compile_condition(c: Condition) -> Predicate:
    name, op = c.field, c.operator
    spec = CATALOGUE[name]
    if op == "CONTAINS":
        wanted = frozenset(v.lower() for v in c.values)
        return lambda r: not wanted.isdisjoint(_lowered_list(r.get(name)))
    if op == "LIKE":
        rx = _like_regex(c.values[0])
        return lambda r: isinstance(v := r.get(name), str) and rx.fullmatch(v) is not None
    if spec.type == Scalar("int64"):
        return _compare(op, [int(v) for v in c.values], lambda r: as_int(r.get(name)))
    strings = frozenset(c.values)
    return lambda r: r.get(name) in strings


def _compile_group(g: ConditionGroup) -> Predicate:
    preds = [_compile_condition(c) for c in g.conditions]
    if g.operator == "and":
        return lambda r: all(p(r) for p in preds)
    if g.operator == "or":
        return lambda r: any(p(r) for p in preds)
    return lambda r: not any(p(r) for p in preds)


def _compile_seed(groups: Iterable[ConditionGroup]) -> Predicate:
    preds = [_compile_group(g) for g in groups]
    return lambda r: all(p(r) for p in preds)
