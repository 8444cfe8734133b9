"""What every backend does to the records it receives: clean strings, drop repeated ids."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import pyarrow as pa

from harvester._exceptions import BadAnswer
from harvester._names import canonical_names, has_aliases
from harvester.api.types import Record
from harvester.fields import as_int
from harvester.query import clean_string

__all__ = ["clean", "coerce_records", "fresh_records", "fresh_rows", "record_id"]


def clean(value: Any) -> Any:
    """`value` with control characters removed from every string, however deeply nested."""
    if isinstance(value, str):
        return clean_string(value)
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def record_id(record: Record) -> int | None:
    """The video id as an int (the API sends int64; a stringified id is accepted too)."""
    return as_int(record.get("id"))


def fresh_records(raw: Iterable[Any], seen: set[int], *, cleaned: bool = False) -> list[Record]:
    """Cleaned records whose id is not in `seen` (which is updated), under the catalogue's
    names. Records without an id cannot be deduplicated and are kept (the sink quarantines
    them). `cleaned`: the strings are clean already (the HTTP
    session cleans every answer it decodes)."""
    out: list[Record] = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        item = canonical_names(item)  # `video_id`, `create_date`, ... as the catalogue says
        rid = record_id(item)
        if rid is not None:
            if rid in seen:
                continue
            seen.add(rid)
        out.append(item if cleaned else clean(item))
    return out


def fresh_rows(rows: pa.StructArray, seen: set[int]) -> pa.StructArray:
    """`fresh_records` for a page decoded into Arrow: null items and ids in `seen` (updated)
    dropped, rows without an id kept."""
    valid = rows.is_valid().to_pylist() if rows.null_count else None
    if rows.type.get_field_index("id") < 0:
        return rows if valid is None else rows.filter(rows.is_valid())
    # `field()` ignores the struct's own nulls: a null item's id may read as anything.
    ids = rows.field("id").to_pylist()
    if valid is None and None not in ids and seen.isdisjoint(ids) and len(set(ids)) == len(ids):
        seen.update(ids)  # the usual page: nothing to drop, checked at C speed
        return rows
    keep: list[bool] = []
    for i, rid in enumerate(ids):
        if valid is not None and not valid[i]:
            keep.append(False)
        elif rid is None:
            keep.append(True)
        elif rid in seen:
            keep.append(False)
        else:
            seen.add(rid)
            keep.append(True)
    return rows.filter(pa.array(keep, pa.bool_()))


def coerce_records(answer: Any) -> list[Any]:
    """The record list inside whatever shape an SDK call returned: a list, a dict holding
    `result` (or `data` / `videos`), or either of those as JSON text."""
    if isinstance(answer, str | bytes | bytearray):
        try:
            answer = orjson.loads(answer) if answer.strip() else []
        except orjson.JSONDecodeError:
            raise BadAnswer("result is text but not JSON") from None
    if isinstance(answer, dict):
        for key in ("result", "data", "videos", "records"):
            if key in answer:
                return coerce_records(answer[key])
        return [answer] if "id" in answer or has_aliases(answer) else []
    if isinstance(answer, list | tuple):
        return list(answer)
    if answer is None:
        return []
    raise BadAnswer(f"result of unexpected type {type(answer).__name__}")
