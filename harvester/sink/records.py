"""One page of raw API records → one Arrow RecordBatch in the study's schema.

This is the pipeline's CPU hot path, so columns are built by Arrow from plain lists and only a
column that fails Arrow's own type inference falls back to coercing value by value. Nothing is
silently lost: a value that cannot be coerced becomes null and its raw form goes to `_extra`
(JSON), together with any field the schema does not know.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import chain, repeat

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from harvester.sink.partition import is_lossless
from harvester.sink.schema import DERIVED_PARTITIONS, SOURCES, Layout

__all__ = ["CONTROL_CHARS", "PageResult", "normalise_page", "to_json"]

#: C0 controls except tab and newline, and DEL (as `harvester.query.clean_string`; RE2).
CONTROL_CHARS = r"[\x00-\x08\x0B-\x1F\x7F]"
_HAS_CONTROL = re.compile(rb"[\x00-\x08\x0B-\x1F\x7F]").search
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_DATE_FORMATS = {"create_date": "%Y-%m-%d", "create_month": "%Y-%m", "create_year": "%Y"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class PageResult:
    """A normalised page and what was dropped from it (for logs and `status`).

    `ids` are the ids the batch holds; add them to the leaf's seen-set only once the page's
    state transaction has committed, so a failed checkpoint cannot hide records on retry.
    """

    batch: pa.RecordBatch
    ids: list[int]
    received: int
    invalid: int = 0
    outside: int = 0
    duplicates: int = 0
    uncoerced: int = 0
    unknown_fields: frozenset[str] = field(default_factory=frozenset)

    @property
    def rows(self) -> int:
        return int(self.batch.num_rows)


def _to_int(v: object) -> int | None:
    """A lossless int64 from an int, an integral float or a decimal string; else None."""
    if type(v) is int:
        return v if _INT64_MIN <= v <= _INT64_MAX else None
    if isinstance(v, float) and v.is_integer():
        return _to_int(int(v))
    if isinstance(v, str):
        s = v.strip()
        ok = s[1:].isdecimal() if s[:1] in "+-" else s.isdecimal()
        return _to_int(int(s)) if ok and s.isascii() else None
    return None


def _coerce(v: object, t: pa.DataType) -> tuple[object, bool]:
    """(value for Arrow, whether nothing was lost)."""
    if v is None:
        return None, True
    if pa.types.is_int64(t):
        i = _to_int(v)
        return i, i is not None
    if pa.types.is_string(t):
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates from a lenient JSON decoder
                return v.encode("utf-8", "replace").decode("utf-8"), False
            return v, True
        if isinstance(v, int | float) and not isinstance(v, bool):
            return str(v), True
        return None, False
    if pa.types.is_boolean(t):
        if isinstance(v, bool):
            return v, True
        if type(v) is int and v in (0, 1):
            return bool(v), True
        if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0"):
            return v.strip().lower() in ("true", "1"), True
        return None, False
    if pa.types.is_list(t):
        if not isinstance(v, list | tuple):
            return None, False
        items, ok = [], True
        for item in v:
            c, good = _coerce(item, t.value_type)
            ok = ok and good
            if good or c is not None:  # a partly coerced struct still beats nothing
                items.append(c)
        return items, ok
    if pa.types.is_struct(t):
        if not isinstance(v, dict):
            return None, False
        names = {f.name for f in t}
        ok = all(k in names for k in v)
        out = {}
        for f in t:
            c, good = _coerce(v.get(f.name), f.type)
            out[f.name] = c
            ok = ok and good
        return out, ok
    raise TypeError(f"no coercion to {t}")


_PY_TYPES = {"int64": int, "string": str, "bool": bool}


def _plain(values: list[object], t: pa.DataType) -> bool:
    """Whether Arrow can take `values` as `t` with nothing changed or dropped.

    Arrow alone would truncate 1.5 to 1 and ignore unknown struct keys, and its type inference
    is slow; comparing Python types with `map(type, …)` runs at C speed.
    """
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if pa.types.is_list(t):
        if not kinds <= {list}:
            return False
        items = [x for v in values if v is not None for x in v]  # type: ignore[attr-defined]
        return _plain(items, t.value_type)
    if pa.types.is_struct(t):
        if not kinds <= {dict}:
            return False
        dicts: list[dict[str, object]] = [v for v in values if v is not None]  # type: ignore[misc]
        if not {f.name for f in t}.issuperset(chain.from_iterable(dicts)):
            return False
        return all(_plain(list(map(dict.get, dicts, repeat(f.name))), f.type) for f in t)
    return kinds <= {_PY_TYPES[str(t)]}


def _column(
    values: list[object], t: pa.DataType, name: str, extras: dict[int, dict[str, object]]
) -> pa.Array:
    if _plain(values, t):
        try:
            return pa.array(values, type=t)
        except (pa.ArrowException, OverflowError, UnicodeError):
            pass  # beyond int64, lone surrogates: sort it out value by value
    out = []
    for i, v in enumerate(values):
        c, ok = _coerce(v, t)
        out.append(c)
        if not ok:
            extras.setdefault(i, {})[name] = v
    return pa.array(out, type=t)


def _clean(arr: pa.Array) -> pa.Array:
    """Remove control characters from every string inside `arr`, however nested."""
    t = arr.type
    if pa.types.is_string(t):
        data = arr.buffers()[2]
        if data is None or not _HAS_CONTROL(memoryview(data)):  # the usual case: a cheap scan
            return arr
        return pc.replace_substring_regex(arr, pattern=CONTROL_CHARS, replacement="")
    if pa.types.is_list(t):
        values = _clean(arr.values)
        return pa.ListArray.from_arrays(arr.offsets, values, type=t, mask=arr.is_null())
    if pa.types.is_struct(t):
        children = [_clean(arr.field(i)) for i in range(t.num_fields)]
        return pa.StructArray.from_arrays(children, fields=list(t), mask=arr.is_null())
    return arr


@cache
def _has_string(t: pa.DataType) -> bool:
    if pa.types.is_string(t):
        return True
    if pa.types.is_list(t):
        return _has_string(t.value_type)
    if pa.types.is_struct(t):
        return any(_has_string(f.type) for f in t)
    return False


def to_json(obj: object) -> str:
    """Compact JSON for `_extra`; falls back to the stdlib for ints beyond 64 bits and the like."""
    try:
        return orjson.dumps(obj, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(obj, default=repr, separators=(",", ":"))


def normalise_page(
    records: Sequence[object],
    layout: Layout,
    *,
    leaf_key: str,
    window: tuple[int, int],
    source: str,
    retrieved_at: datetime,
    seen: set[int] | frozenset[int] = frozenset(),
) -> PageResult:
    """Normalise one page for `leaf_key`: drop records without a valid id/create_time, outside
    the half-open `window`, or already in `seen` (the caller's, never mutated) or earlier on
    this page; coerce the rest to `layout.schema`."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    start, end = window
    keep: list[dict[str, object]] = []
    ids: list[int] = []
    times: list[int] = []
    page_seen: set[int] = set()
    invalid = outside = dups = 0
    for r in records:
        if type(r) is not dict:
            invalid += 1
            continue
        i, t = r.get("id"), r.get("create_time")
        if type(i) is not int or not _INT64_MIN <= i <= _INT64_MAX:
            i = _to_int(i)
        if type(t) is not int:
            t = _to_int(t)
        if i is None or t is None:
            invalid += 1
        elif not start <= t < end:
            outside += 1
        elif i in seen or i in page_seen:
            dups += 1
        else:
            page_seen.add(i)
            keep.append(r)
            ids.append(i)
            times.append(t)

    n = len(keep)
    # An integer, not a datetime: converting an aware datetime makes Arrow look for pytz.
    micros = (retrieved_at - _EPOCH) // timedelta(microseconds=1)
    extras: dict[int, dict[str, object]] = {}
    known = frozenset(layout.fields)
    unknown: set[str] = set()
    for idx, r in enumerate(keep):
        if not r.keys() <= known:
            more = {k: v for k, v in r.items() if k not in known}
            unknown.update(more)
            extras.setdefault(idx, {}).update(more)
    arrays: list[pa.Array] = []
    times_arr = pa.array(times, type=pa.int64())
    for f in layout.schema:
        name = f.name
        if name == "id":
            arrays.append(pa.array(ids, type=pa.int64()))
        elif name == "create_time":
            arrays.append(times_arr)
        elif name in known:
            col = _column(list(map(dict.get, keep, repeat(name))), f.type, name, extras)
            arrays.append(_clean(col) if _has_string(f.type) else col)
        elif name == "_retrieved_at":
            arrays.append(pa.repeat(pa.scalar(micros, f.type), n))
        elif name == "_shard":
            arrays.append(pa.repeat(pa.scalar(leaf_key, pa.string()), n))
        elif name == "_source":
            arrays.append(pa.repeat(pa.scalar(source, pa.string()), n))
        elif name == "_extra":
            arrays.append(pa.nulls(n, pa.string()))  # filled in below, once extras are known
        elif name in DERIVED_PARTITIONS:
            stamps = pc.cast(times_arr, pa.timestamp("s"))
            arrays.append(pc.strftime(stamps, format=_DATE_FORMATS[name]))
    # A partition value the path cannot carry exactly (empty, over-long) is kept raw.
    for p in layout.partition_by:
        if p in known:
            col = arrays[layout.schema.get_field_index(p)]
            for idx, v in enumerate(col.to_pylist()):
                if v is not None and not is_lossless(v):
                    extras.setdefault(idx, {}).setdefault(p, keep[idx].get(p))
    if extras:
        j = layout.schema.get_field_index("_extra")
        arrays[j] = pa.array(
            [to_json(extras[i]) if i in extras else None for i in range(n)], type=pa.string()
        )
    batch = pa.RecordBatch.from_arrays(arrays, schema=layout.schema)
    return PageResult(
        batch,
        ids,
        len(records),
        invalid,
        outside,
        dups,
        sum(1 for e in extras.values() for k in e if k in known),
        frozenset(unknown),
    )
