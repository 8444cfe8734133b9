"""Queries in both of TikTok's forms: parse and validate, evaluate, translate.

The seed form is the Research Query Service's `condition_groups`; the REST form is the public
Research API's `{"and", "or", "not"}`. Validation happens here, before any request, and every
problem is one `QueryError` line naming the field and the fix. `matches` is the single evaluator:
the simulator answers queries with it and the harvester post-filters with it, so both agree on
what a condition means (docs/design.md lists the semantics chosen where the specs are silent).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from harvester._exceptions import QueryError
from harvester.fields import (
    CATALOGUE,
    REST_CONDITION_FIELDS,
    REST_OPERATIONS,
    REST_RETURNABLE,
    RQS_RETURNABLE,
    VIDEO_LENGTHS,
    Scalar,
)

__all__ = [
    "Condition",
    "ConditionGroup",
    "RestCondition",
    "RestQuery",
    "SeedQuery",
    "Source",
    "Stage",
    "Translation",
    "clean_string",
    "parse_rest_query",
    "parse_seed_query",
    "translate_to_rest",
    "validate_fields",
    "validate_limit",
]

Source = Literal["research-api", "rqs", "pyrqs"]
Stage = Literal["test", "execution"]
Record = Mapping[str, Any]
Predicate = Callable[[Record], bool]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
STAGE_LIMITS: Mapping[str, tuple[int, int]] = {"test": (100, 5_000), "execution": (1_000, 100_000)}

# C0 controls and DEL, except tab and newline: the API has been seen to put NUL bytes in usernames.
_CONTROL = {c: None for c in (*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F)}
_HAS_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_string(s: str) -> str:
    """`s` without NUL and other control characters (tab and newline are kept)."""
    # The search is far cheaper than translate on the common, clean string.
    return s.translate(_CONTROL) if _HAS_CONTROL.search(s) else s


# --------------------------------------------------------------------------- seed form


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


def _no_unknown_keys(obj: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise QueryError(
                f"{where} has unknown key {key!r}; allowed keys: " + ", ".join(sorted(allowed))
            )


def _parse_values(raw: object, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise QueryError(f"{where}.field_values must be a non-empty list of strings")
    out = []
    for v in raw:
        # Integers are accepted for convenience; the wire form is always strings.
        if isinstance(v, bool) or not isinstance(v, str | int):
            raise QueryError(f'{where}.field_values has {v!r}; values must be strings like "NL"')
        out.append(str(v))
    return tuple(out)


def _check_arity(op: str, values: tuple[str, ...], where: str) -> None:
    if op not in ("IN", "CONTAINS") and len(values) != 1:
        raise QueryError(
            f"{where}: {op} takes exactly one value, got {len(values)}; use IN for several"
        )


def _check_int(value: str, where: str, fname: str) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        raise QueryError(
            f"{where}: {fname} value {value!r} is not an integer; {fname} is int64"
        ) from None
    if not INT64_MIN <= n <= INT64_MAX:
        raise QueryError(f"{where}: {fname} value {value!r} does not fit in int64")
    return n


def _check_like(pattern: str, where: str) -> None:
    if not pattern:
        raise QueryError(f'{where}: LIKE pattern is empty; use a pattern like "%election%"')
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    if trailing % 2 == 1:
        raise QueryError(
            f"{where}: LIKE pattern {pattern!r} ends in a lone escape '\\'; "
            "write '\\\\' for a backslash"
        )


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


def _as_int(v: object) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            return None
    return None


def _compare(op: str, nums: Sequence[int], get: Callable[[Record], int | None]) -> Predicate:
    first = nums[0]
    if op in ("EQ", "IN"):
        wanted = frozenset(nums)
        return lambda r: get(r) in wanted
    cmp: Callable[[int], bool] = {
        "GT": lambda x: x > first,
        "GTE": lambda x: x >= first,
        "LT": lambda x: x < first,
        "LTE": lambda x: x <= first,
    }[op]

    def pred(r: Record) -> bool:
        x = get(r)
        return x is not None and cmp(x)

    return pred


def _lowered_list(v: object) -> list[str]:
    if not isinstance(v, list):
        return []
    return [x.lower() for x in v if isinstance(x, str)]


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
        return _compare(op, [int(v) for v in c.values], lambda r: _as_int(r.get(name)))
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


# --------------------------------------------------------------------------- REST form


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
            pred = _compile_rest(self)
            object.__setattr__(self, "_predicate", pred)
        return pred(record)


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
    t = _as_int(r.get("create_time"))
    if t is None:
        return None
    return int(datetime.fromtimestamp(t, UTC).strftime("%Y%m%d"))


def _length_bucket(r: Record) -> str | None:
    d = _as_int(r.get("video_duration"))
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
        return _compare(c.operation, [int(v) for v in vals], lambda r: _as_int(r.get(key)))
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


def _compile_rest(q: RestQuery) -> Predicate:
    ands = [_compile_rest_condition(c) for c in q.and_]
    ors = [_compile_rest_condition(c) for c in q.or_]
    nots = [_compile_rest_condition(c) for c in q.not_]

    def pred(r: Record) -> bool:
        return (
            all(p(r) for p in ands)
            and (not ors or any(p(r) for p in ors))
            and not any(p(r) for p in nots)
        )

    return pred


# --------------------------------------------------------------------------- translation


@dataclass(frozen=True, slots=True)
class Translation:
    """A seed query as the public API can ask it.

    `rest` selects a superset of the seed query's matches (within the study's dates);
    `post_filter` is applied to downloaded records to get exactly the seed's matches, and needs
    `extra_fields` fetched even when the study did not ask for them.
    """

    rest: RestQuery
    post_filter: SeedQuery
    extra_fields: tuple[str, ...]
    warnings: tuple[str, ...]


# Seed field -> REST field_name, and whether the REST condition selects exactly the same records
# (hashtag_name and keyword match fuzzily: the API returns false positives).
_REST_EQUIV: Mapping[str, tuple[str, bool]] = {
    "id": ("video_id", True),
    "username": ("username", True),
    "region_code": ("region_code", True),
    "music_id": ("music_id", True),
    "view_count": ("view_count", True),
    "comment_count": ("comment_count", True),
    "effect_ids": ("effect_id", True),
    "hashtag_names": ("hashtag_name", False),
    "video_description": ("keyword", False),
}

_LIKE_LITERALS = re.compile(r"(?:\\.|[^%_\\])+")


def _rest_equivalent(c: Condition) -> tuple[RestCondition, bool] | None:
    """The REST condition selecting a superset of `c`'s matches, and whether it is exact."""
    if c.field not in _REST_EQUIV:
        return None
    name, exact = _REST_EQUIV[c.field]
    op = "IN" if c.operator == "CONTAINS" else c.operator
    values = c.values
    if c.operator == "LIKE":
        runs = _LIKE_LITERALS.findall(values[0])
        if not runs:
            return None  # "%" alone: nothing to ask the API for
        literal = max(runs, key=len).replace("\\", "")
        op, values = "EQ", (literal,)
    if op == "EQ" and len(values) > 1:
        op = "IN"
    return RestCondition(op, name, values), exact


def translate_to_rest(seed: SeedQuery) -> Translation:
    """Translate for the public API; conditions it cannot express become a local post-filter."""
    and_: list[RestCondition] = []
    or_: list[RestCondition] = []
    not_: list[RestCondition] = []
    post: list[ConditionGroup] = []
    warnings: list[str] = []
    local: list[Condition] = []
    for g in seed.groups:
        pushed = [_rest_equivalent(c) for c in g.conditions]
        if g.operator == "not":
            kept = []
            for c, eq in zip(g.conditions, pushed, strict=True):
                # NOT of a superset would drop true matches: only exact conditions go remote.
                if eq is not None and eq[1]:
                    not_.append(eq[0])
                else:
                    kept.append(c)
            if kept:
                post.append(ConditionGroup("not", tuple(kept)))
                local.extend(kept)
            continue
        if g.operator == "and":
            inexact = False
            for c, eq in zip(g.conditions, pushed, strict=True):
                if eq is None:
                    inexact = True
                    local.append(c)
                else:
                    and_.append(eq[0])
                    inexact = inexact or not eq[1]
            if inexact:
                post.append(g)
            continue
        # An "or" group can go remote only whole, and the API has a single "or" list.
        if not or_ and all(eq is not None for eq in pushed):
            or_.extend(eq[0] for eq in pushed if eq is not None)
            if not all(eq is not None and eq[1] for eq in pushed):
                post.append(g)
        else:
            post.append(g)
            local.extend(c for c, eq in zip(g.conditions, pushed, strict=True) if eq is None)
    extra: list[str] = []
    for c in local:
        if c.field == "create_time":
            continue  # the study's windows carry the dates; the post-filter keeps it exact
        if c.field not in REST_RETURNABLE:
            raise QueryError(
                f"condition {c} has no equivalent in the public Research API and "
                f"the API cannot return {c.field} to filter locally; "
                'use source = "rqs" for this study'
            )
        warnings.append(
            f"condition {c} is applied after download (the public Research API cannot ask it "
            "exactly); quota is spent on the records it drops"
        )
        if c.field not in extra:
            extra.append(c.field)
    for g in post:
        for c in g.conditions:
            if c.field not in extra:
                extra.append(c.field)
    return Translation(
        rest=RestQuery(tuple(and_), tuple(or_), tuple(not_)),
        post_filter=SeedQuery(tuple(post)),
        extra_fields=tuple(extra),
        warnings=tuple(warnings),
    )


# --------------------------------------------------------------------------- fields and limits


def validate_fields(fields: str | Sequence[str], source: Source) -> tuple[str, ...]:
    """The fields to return, checked against what `source` can return; order kept, no repeats."""
    names = [f.strip() for f in fields.split(",")] if isinstance(fields, str) else list(fields)
    names = [n for n in names if n]
    if not names:
        raise QueryError(
            'fields is empty; list the fields to return, e.g. ["id", "create_time", "username"]'
        )
    allowed = REST_RETURNABLE if source == "research-api" else RQS_RETURNABLE
    out: list[str] = []
    for n in names:
        if not isinstance(n, str) or n not in CATALOGUE:
            raise QueryError(
                f"unknown field {n!r} in fields; known fields: " + ", ".join(sorted(allowed))
            )
        if n not in allowed:
            other = "rqs" if source == "research-api" else "research-api"
            raise QueryError(
                f"field {n!r} cannot be returned by source {source!r}; "
                f"remove it or use source = {other!r}"
            )
        if n not in out:
            out.append(n)
    return tuple(out)


def validate_limit(limit: int | None, stage: Stage) -> int:
    """The per-task record limit for `stage`, its default when None."""
    if stage not in STAGE_LIMITS:
        raise QueryError(f'stage {stage!r} is unknown; use "test" or "execution"')
    default, maximum = STAGE_LIMITS[stage]
    if limit is None:
        return default
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise QueryError(f"limit {limit!r} is not a whole number; use 1 to {maximum:,}")
    if not 1 <= limit <= maximum:
        raise QueryError(
            f"limit {limit:,} is out of range for the {stage} stage; use 1 to {maximum:,}"
        )
    return limit
