"""What both query forms share: value checks, field and limit validation, string cleaning."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from harvester._exceptions import QueryError
from harvester.fields import CATALOGUE, REST_RETURNABLE, RQS_RETURNABLE

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


#: The public API's longest window: end_date at most 30 days after start_date.
MAX_REST_WINDOW_DAYS = 30


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
