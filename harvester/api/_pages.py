"""Result pages decoded straight from the HTTP body into Arrow columns.

A page of 10,000 records is about 10 MB of JSON. Decoded into Python objects it costs about
four times the CPU and four times the memory that Arrow's JSON reader needs to parse it into
columns of the catalogue's types (and the reader releases the GIL while it works). The reader
is strict exactly where the harvester must be careful: a value of another JSON type than the
field's, an integer beyond int64, a fraction where an integer belongs or a broken surrogate
pair fails the parse, and a key the catalogue does not know shows up as an inferred column;
invalid UTF-8 anywhere in the body is checked first (the reader checks it only in keys). On
any of these, and on any answer that is not a plain success, the decoder returns None and the
caller decodes the body the general way (`decode_answer`), which classifies errors and coerces
value by value. So this path only ever takes a page that the general path would
have taken unchanged, and both give the same rows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.json as pj

from harvester._arrow import arrow_type, clean_strings
from harvester.api._errors import may_hold_control
from harvester.fields import CATALOGUE

__all__ = ["PageDecoder", "record_type"]

#: The reader needs the whole body in one block (a page is one JSON value on one "line").
_MIN_BLOCK = 1 << 20
_STARTS_WITH_OBJECT = re.compile(rb"[ \t\r\n]*\{").match


def _check_utf8(raw: bytes) -> None:
    """Raise ArrowInvalid unless `raw` is valid UTF-8 (Arrow's vectorised check, no copy)."""
    offsets = pa.array([0, len(raw)], pa.int64()).buffers()[1]
    whole = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(raw)])
    whole.cast(pa.large_string())


def record_type(fields: Sequence[str]) -> pa.StructType:
    """One record of a page that asked for `fields`, in the catalogue's Arrow types."""
    return pa.struct([pa.field(f, arrow_type(CATALOGUE[f].type)) for f in fields])


class PageDecoder:
    """`decoder(body)` → the answer's `data` with `list_key` as a `pa.StructArray` of records
    (null where the API sent a null item) and `meta` members as Python values, or None when
    the body must go the general way."""

    def __init__(
        self, list_key: str, fields: Sequence[str], meta: Mapping[str, pa.DataType]
    ) -> None:
        self.list_key = list_key
        self.record = record_type(fields)
        self.meta = tuple(meta)
        data = pa.struct([pa.field(list_key, pa.list_(self.record)), *meta.items()])
        error = pa.struct([(k, pa.string()) for k in ("code", "message", "log_id")])
        self._options = pj.ParseOptions(
            explicit_schema=pa.schema([("data", data), ("error", error)]),
            # "infer", not "ignore": an unknown key must be seen, so that the page goes the
            # general way and the key's values are kept in `_extra`.
            unexpected_field_behavior="infer",
            # One block holds the whole body, so this only lets a pretty-printed body through.
            newlines_in_values=True,
        )

    def __call__(self, raw: bytes) -> dict[str, Any] | None:
        # Only an object may reach the reader: a body of `null` crashes pyarrow 26's reader
        # (the process, not an exception), and the API answers an object or an error.
        if _STARTS_WITH_OBJECT(raw) is None:
            return None
        try:
            _check_utf8(raw)  # orjson refuses invalid UTF-8 anywhere; the reader only in keys
            table = pj.read_json(
                pa.py_buffer(raw),
                read_options=pj.ReadOptions(
                    use_threads=False, block_size=max(len(raw) + 1, _MIN_BLOCK)
                ),
                parse_options=self._options,
            )
        except (pa.ArrowException, ValueError):
            return None
        if table.num_rows != 1:  # two JSON values, or none
            return None
        error = table.column("error")[0].as_py()
        if error is not None and error.get("code") not in (None, "ok"):
            return None  # an error answer: the general path classifies it
        data_col = table.column("data").combine_chunks()
        if data_col.null_count:
            return None
        records = data_col.field(self.list_key)
        if not records.type.value_type.equals(self.record):
            return None  # a key the catalogue does not know, somewhere inside a record
        rows: pa.StructArray = records.flatten()  # a null list (no records) flattens to []
        if may_hold_control(raw):
            rows = clean_strings(rows)
        out: dict[str, Any] = {self.list_key: rows}
        for name in self.meta:
            out[name] = data_col.field(name)[0].as_py()
        return out
