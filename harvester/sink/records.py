"""One page of raw API records → one Arrow RecordBatch in the study's schema.

This is the pipeline's CPU hot path, so columns are built by Arrow from plain lists and only a
column that fails Arrow's own type inference falls back to coercing value by value. Nothing is
silently lost: a value that cannot be coerced becomes null and its raw form goes to `_extra`
(JSON), together with any field the schema does not know, and a struct holding a key the schema
does not know keeps its known keys in its column and its whole raw form in `_extra`.

The documentation shows some fields in two shapes, and both are read: a lone struct where a list
of structs belongs (`video_tag`) is a list of one (other names of fields, such as
`favourites_count`, are `harvester._names`' business).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain, repeat

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from harvester._arrow import CONTROL_CHARS
from harvester._names import canonical_names, has_aliases
from harvester.sink.partition import is_lossless
from harvester.sink.schema import DERIVED_PARTITIONS, SOURCES, Layout

__all__ = ["CONTROL_CHARS", "PageResult", "normalise_page", "normalise_rows", "to_json"]

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
#: Derived partitions are prefixes of the ISO date: YYYY-MM-DD, YYYY-MM, YYYY.
_DATE_WIDTH = {"create_date": 10, "create_month": 7, "create_year": 4}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class PageResult:
    """A normalised page and what was dropped from it (for logs and `status`)."""

    batch: pa.RecordBatch
    received: int
    invalid: int = 0
    outside: int = 0
    uncoerced: int = 0
    unknown_fields: frozenset[str] = field(default_factory=frozenset)
    #: The records counted in `invalid`, as received: without a usable id or create_time they
    #: cannot enter the dataset, and are kept apart instead of lost (`sink.quarantine`).
    rejected: tuple[object, ...] = ()

    @property
    def row_count(self) -> int:
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
        if isinstance(v, dict) and pa.types.is_struct(t.value_type):
            v = [v]  # one struct where a list of them belongs: a list of one, nothing lost
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


def to_json(obj: object) -> str:
    """Compact JSON for `_extra`; falls back to the stdlib for ints beyond 64 bits and the like."""
    try:
        return orjson.dumps(obj, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(obj, default=repr, separators=(",", ":"))


def _utc_dates(times: pa.Array) -> pa.Array:
    """`YYYY-MM-DD` (UTC) of epoch seconds: a cast through date32 is several times cheaper
    than strftime on timestamps."""
    # Arrow's integer division truncates toward zero; the day of a negative time is the floor.
    shifted = pc.subtract(times, pc.if_else(pc.less(times, 0), 86_399, 0))
    days = pc.divide(shifted, 86_400).cast(pa.int32())
    return days.cast(pa.date32()).cast(pa.string())


def _select(
    ids: list[int | None],
    times: list[int | None],
    window: tuple[int, int],
) -> tuple[list[int], list[int], list[int], int, int]:
    """(indexes kept, their ids, their create_times, invalid, outside)."""
    start, end = window
    keep: list[int] = []
    kept_ids: list[int] = []
    kept_times: list[int] = []
    invalid = outside = 0
    for idx, (i, t) in enumerate(zip(ids, times, strict=True)):
        if i is None or t is None:
            invalid += 1
        elif not start <= t < end:
            outside += 1
        else:
            keep.append(idx)
            kept_ids.append(i)
            kept_times.append(t)
    return keep, kept_ids, kept_times, invalid, outside


def _assemble(
    layout: Layout,
    column: Callable[[str, pa.DataType], pa.Array],
    ids: pa.Array,
    times_arr: pa.Array,
    *,
    leaf_key: str,
    source: str,
    retrieved_at: datetime,
    extras: dict[int, dict[str, object]],
    raw_value: Callable[[int, str], object],
) -> pa.RecordBatch:
    """The batch in `layout.schema`: `column(name, type)` gives each catalogue field's column
    (adding to `extras` what it could not take); provenance and derived partitions are added
    here, and `_extra` from `extras`."""
    n = len(ids)
    # An integer, not a datetime: converting an aware datetime makes Arrow look for pytz.
    micros = (retrieved_at - _EPOCH) // timedelta(microseconds=1)
    known = frozenset(layout.fields)
    arrays: list[pa.Array] = []
    dates: pa.Array | None = None
    for f in layout.schema:
        name = f.name
        if name == "id":
            arrays.append(ids)
        elif name == "create_time":
            arrays.append(times_arr)
        elif name in known:
            arrays.append(column(name, f.type))
        elif name == "_retrieved_at":
            arrays.append(pa.repeat(pa.scalar(micros, f.type), n))
        elif name == "_shard":
            arrays.append(pa.repeat(pa.scalar(leaf_key, pa.string()), n))
        elif name == "_source":
            arrays.append(pa.repeat(pa.scalar(source, pa.string()), n))
        elif name == "_extra":
            arrays.append(pa.nulls(n, pa.string()))  # filled in below, once extras are known
        elif name in DERIVED_PARTITIONS:
            if dates is None:
                dates = _utc_dates(times_arr)
            arrays.append(pc.utf8_slice_codeunits(dates, 0, _DATE_WIDTH[name]))
    # A partition value the path cannot carry exactly (empty, over-long) is kept raw.
    for p in layout.partition_by:
        if p in known:
            col = arrays[layout.schema.get_field_index(p)]
            for idx, v in enumerate(col.to_pylist()):
                if v is not None and not is_lossless(v):
                    extras.setdefault(idx, {}).setdefault(p, raw_value(idx, p))
    if extras:
        j = layout.schema.get_field_index("_extra")
        arrays[j] = pa.array(
            [to_json(extras[i]) if i in extras else None for i in range(n)], type=pa.string()
        )
    return pa.RecordBatch.from_arrays(arrays, schema=layout.schema)


def normalise_page(
    records: Sequence[object],
    layout: Layout,
    *,
    leaf_key: str,
    window: tuple[int, int],
    source: str,
    retrieved_at: datetime,
) -> PageResult:
    """Normalise one page for `leaf_key`: drop records without a valid id/create_time or outside
    the half-open `window`; coerce the rest to `layout.schema`.

    The records come from the API layer deduplicated (within the page and against the leaf's
    earlier pages) and with their strings cleaned: neither is done again here."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    # The API layer renames already; a page handed here directly gets the same treatment.
    if any(type(r) is dict and has_aliases(r) for r in records):
        records = [canonical_names(r) if type(r) is dict else r for r in records]
    ids: list[int | None] = []
    times: list[int | None] = []
    for r in records:
        if type(r) is not dict:
            ids.append(None)
            times.append(None)
            continue
        i, t = r.get("id"), r.get("create_time")
        if type(i) is not int or not _INT64_MIN <= i <= _INT64_MAX:
            i = _to_int(i)
        if type(t) is not int:
            t = _to_int(t)
        ids.append(i)
        times.append(t)
    index, kept_ids, kept_times, invalid, outside = _select(ids, times, window)
    keep: list[dict[str, object]] = [records[i] for i in index]  # type: ignore[misc]
    rejected = (
        tuple(r for r, i, t in zip(records, ids, times, strict=True) if i is None or t is None)
        if invalid
        else ()
    )

    extras: dict[int, dict[str, object]] = {}
    known = frozenset(layout.fields)
    unknown: set[str] = set()
    for idx, r in enumerate(keep):
        if not r.keys() <= known:
            more = {k: v for k, v in r.items() if k not in known}
            unknown.update(more)
            extras.setdefault(idx, {}).update(more)

    def column(name: str, t: pa.DataType) -> pa.Array:
        return _column(list(map(dict.get, keep, repeat(name))), t, name, extras)

    batch = _assemble(
        layout,
        column,
        pa.array(kept_ids, type=pa.int64()),
        pa.array(kept_times, type=pa.int64()),
        leaf_key=leaf_key,
        source=source,
        retrieved_at=retrieved_at,
        extras=extras,
        raw_value=lambda idx, name: keep[idx].get(name),
    )
    return PageResult(
        batch,
        len(records),
        invalid,
        outside,
        sum(1 for e in extras.values() for k in e if k in known),
        frozenset(unknown),
        rejected,
    )


def normalise_rows(
    rows: pa.StructArray,
    layout: Layout,
    *,
    leaf_key: str,
    window: tuple[int, int],
    source: str,
    retrieved_at: datetime,
) -> PageResult:
    """`normalise_page` for a page the API layer decoded into Arrow (`Page.rows`).

    Its values have the catalogue's types already, its strings are clean and its ids fresh, so
    nothing is coerced: rows are only dropped (null items, no id or create_time, outside the
    window), and fields the study fetched but does not keep are left out.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    names = rows.type
    if names.get_field_index("id") < 0 or names.get_field_index("create_time") < 0:
        raise ValueError("rows without id and create_time cannot be normalised")
    received = len(rows)
    start, end = window
    id_col, time_col = rows.field("id"), rows.field("create_time")
    # Vectorised: `field()` ignores the struct's own nulls, so a null item is ruled out by the
    # struct's validity, not by its children's.
    ok = pc.and_(pc.and_(rows.is_valid(), id_col.is_valid()), time_col.is_valid())
    usable = pc.sum(ok).as_py() or 0
    inside = pc.and_(
        ok,
        pc.and_(pc.greater_equal(time_col, start), pc.less(time_col, end)),
    )
    kept = pc.sum(inside).as_py() or 0
    invalid, outside = received - usable, usable - kept
    rejected: tuple[object, ...] = ()
    if invalid:
        # Null items are not records (nothing to keep); rows without id or create_time are.
        unusable = rows.filter(pc.and_(rows.is_valid(), pc.invert(ok)))
        rejected = tuple(unusable.to_pylist())
    if kept < received:
        rows = rows.filter(inside)
    n = len(rows)
    extras: dict[int, dict[str, object]] = {}

    def column(name: str, t: pa.DataType) -> pa.Array:
        if names.get_field_index(name) < 0:
            return pa.nulls(n, t)
        col = rows.field(name)
        if not col.type.equals(t):
            raise TypeError(f"rows hold {name} as {col.type}, the schema wants {t}")
        return col

    batch = _assemble(
        layout,
        column,
        rows.field("id"),
        rows.field("create_time"),
        leaf_key=leaf_key,
        source=source,
        retrieved_at=retrieved_at,
        extras=extras,
        raw_value=lambda idx, name: rows.field(name)[idx].as_py(),
    )
    # Only partition values a path cannot carry land in `_extra` here; counted as coercions,
    # as `normalise_page` counts them.
    uncoerced = sum(len(e) for e in extras.values())
    return PageResult(batch, received, invalid, outside, uncoerced, rejected=rejected)
