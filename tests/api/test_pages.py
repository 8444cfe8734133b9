"""PageDecoder: the fast path takes only pages the general path would take unchanged, and both
give the same rows (record for record, and batch for batch once normalised)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harvester.api._errors import decode_answer, may_hold_control
from harvester.api._pages import PageDecoder, record_type
from harvester.api._records import clean, coerce_records, fresh_records, fresh_rows
from harvester.fields import CATALOGUE
from harvester.simulator.app import Simulator
from harvester.simulator.testing import running_simulator
from harvester.sink import Layout, layout, normalise_page, normalise_rows

#: Every field the Research Query Service can return, in catalogue order.
FIELDS: tuple[str, ...] = tuple(n for n, f in CATALOGUE.items() if f.rqs)
META = {"cursor": pa.int64(), "has_more": pa.bool_(), "total": pa.int64()}
DECODER = PageDecoder("result", FIELDS, META)
RECORD = record_type(FIELDS)
LAYOUT = layout(FIELDS, ("create_date",))
NOW = datetime(2023, 2, 1, 12, 0, tzinfo=UTC)
T0 = 1_672_531_200  # 2023-01-01T00:00:00Z
LEAF = "20230101T000000-20230102T000000"
INT64_MAX = (1 << 63) - 1


def video(i: int, **changes: Any) -> dict[str, Any]:
    """A record with every RQS field, as the API sends it."""
    rec: dict[str, Any] = {
        "id": 7_000_000_000_000_000_000 + i,
        "create_time": T0 + 60 * i,
        "username": f"user{i}",
        "region_code": ["US", "GB", "DE"][i % 3],
        "video_description": f"video {i} #tag",
        "music_id": 6_900_000_000_000_000_000 + i,
        "like_count": 3 * i,
        "comment_count": i % 7,
        "share_count": 1,
        "view_count": 10 * i,
        "effect_ids": ["1", "2"],
        "hashtag_names": ["a", "b"],
        "playlist_id": 5,
        "voice_to_text": "hi",
        "duration_type": 2,
        "favorites_count": 2,
        "is_stem_verified": i % 2 == 0,
        "stem_verified": i % 2 == 1,
        "video_duration": 30,
        "hashtag_info_list": [{"hashtag_id": i, "hashtag_name": "a", "hashtag_description": "d"}],
        "sticker_info_list": [{"sticker_id": "9", "sticker_name": "s"}],
        "effect_info_list": [{"effect_id": "1", "effect_name": "x"}],
        "video_mention_list": ["@x"],
        "video_label": {"content": "lbl"},
        "video_tag": [{"number": 1, "type": "t"}],
        "video_sticker_id": "42",
    }
    rec.update(changes)
    return rec


def body(result: Any, **meta: Any) -> bytes:
    """A successful answer's body, serialised as the API does (compact JSON)."""
    data = {"result": result, **meta}
    return orjson.dumps({"data": data, "error": {"code": "ok", "message": "", "log_id": "L1"}})


def general(raw: bytes) -> dict[str, Any]:
    return decode_answer(200, {}, raw, lambda s: s)


def expand(value: Any, t: pa.DataType) -> Any:
    """`value` as Arrow gives it back for `t`: every struct member present, absent ones null."""
    if value is None:
        return None
    if pa.types.is_struct(t):
        return {f.name: expand(value.get(f.name), f.type) for f in t}
    if pa.types.is_list(t):
        return [expand(v, t.value_type) for v in value]
    return value


def fast_rows(raw: bytes) -> tuple[pa.StructArray, dict[str, Any]]:
    out = DECODER(raw)
    assert out is not None, "the decoder fell back on a page the general path takes unchanged"
    rows = out["result"]
    assert isinstance(rows, pa.StructArray)
    assert rows.type.equals(RECORD)
    rows.validate(full=True)
    return rows, out


def assert_same_batches(
    rows: pa.StructArray,
    records: Sequence[Any],
    lay: Layout = LAYOUT,
    window: tuple[int, int] = (T0, T0 + 86_400),
    seen: tuple[set[int], set[int]] | None = None,
) -> None:
    """`normalise_rows(fresh_rows(…))` equals `normalise_page(fresh_records(…))`."""
    seen_fast, seen_general = seen if seen is not None else (set(), set())
    a = normalise_rows(
        fresh_rows(rows, seen_fast),
        lay,
        leaf_key=LEAF,
        window=window,
        source="rqs",
        retrieved_at=NOW,
    )
    b = normalise_page(
        fresh_records(records, seen_general, cleaned=True),
        lay,
        leaf_key=LEAF,
        window=window,
        source="rqs",
        retrieved_at=NOW,
    )
    assert seen_fast == seen_general
    assert b.uncoerced == 0 and not b.unknown_fields  # the general path changed nothing
    assert a.batch.schema.equals(b.batch.schema)
    for name in a.batch.schema.names:
        assert a.batch.column(name).equals(b.batch.column(name)), name
    assert a.batch.equals(b.batch)
    assert (a.received, a.invalid, a.outside) == (b.received, b.invalid, b.outside)


def assert_decodes_like_general(raw: bytes) -> pa.StructArray:
    """The fast path takes `raw` and gives what the general path gives, record for record, meta
    for meta and batch for batch; returns the rows."""
    rows, out = fast_rows(raw)
    data = general(raw)
    records = coerce_records(data.get("result"))
    assert rows.to_pylist() == [expand(r, RECORD) for r in records]
    for name in META:
        assert out[name] == data.get(name)
    assert_same_batches(rows, records)
    return rows


# --------------------------------------------------------------------------- falls back

ONE = video(1)


def with_raw(record_json: bytes) -> bytes:
    """A body whose only record is `record_json` verbatim."""
    return (
        b'{"data":{"result":['
        + record_json
        + b'],"cursor":1,"has_more":false,"total":1},'
        + (b'"error":{"code":"ok","message":"","log_id":"L"}}')
    )


FALLBACKS: dict[str, bytes] = {
    # A value of another JSON type than the field's.
    "string for int64": body([video(1, like_count="3")]),
    "string for int64 id": body([video(1, id=str(ONE["id"]))]),
    "string for create_time": body([video(1, create_time=str(T0))]),
    "int for bool": body([video(1, is_stem_verified=1)]),
    "string for bool": body([video(1, is_stem_verified="true")]),
    "bool for int64": body([video(1, like_count=True)]),
    "object for list": body([video(1, hashtag_names={"a": 1})]),
    "string for list": body([video(1, effect_ids="1,2")]),
    "list for struct": body([video(1, video_label=["lbl"])]),
    "string for struct": body([video(1, video_label="lbl")]),
    "number for string": body([video(1, username=12345)]),
    "float for string": body([video(1, username=1.5)]),
    "bool for string": body([video(1, region_code=True)]),
    "number in list of strings": body([video(1, hashtag_names=["a", 7])]),
    "string for nested int64": body(
        [video(1, hashtag_info_list=[{"hashtag_id": "7", "hashtag_name": "a"}])]
    ),
    "number for nested string": body([video(1, video_label={"content": 5})]),
    # Numbers an int64 cannot take exactly.
    "fraction for int64": body([video(1, like_count=1.5)]),
    "1.0 for int64": with_raw(b'{"id":1,"create_time":1672531200,"like_count":1.0}'),
    "1e3 for int64": with_raw(b'{"id":1,"create_time":1672531200,"like_count":1e3}'),
    "1E3 for id": with_raw(b'{"id":1E3,"create_time":1672531200}'),
    "-0.0 for int64": with_raw(b'{"id":1,"create_time":1672531200,"view_count":-0.0}'),
    "fraction for nested int64": with_raw(
        b'{"id":1,"create_time":1672531200,"video_tag":[{"number":2.5,"type":"t"}]}'
    ),
    "beyond int64": with_raw(b'{"id":9223372036854775808,"create_time":1672531200}'),
    "below int64": with_raw(b'{"id":-9223372036854775809,"create_time":1672531200}'),
    "far beyond int64": with_raw(
        b'{"id":1,"create_time":1672531200,"view_count":1' + b"0" * 30 + b"}"
    ),
    # Strings that are not Unicode.
    "lone high surrogate": with_raw(b'{"id":1,"create_time":1672531200,"username":"a\\ud800b"}'),
    "lone low surrogate": with_raw(b'{"id":1,"create_time":1672531200,"username":"a\\udc00"}'),
    "reversed surrogate pair": with_raw(
        b'{"id":1,"create_time":1672531200,"username":"\\ude00\\ud83d"}'
    ),
    "lone surrogate, nested": with_raw(
        b'{"id":1,"create_time":1672531200,"video_label":{"content":"\\ud800"}}'
    ),
    "invalid UTF-8 in a key": with_raw(b'{"id":1,"create_time":1672531200,"\xff":1}'),
    # Keys the catalogue does not know.
    "unknown key": body([video(1, unannounced_7=1)]),
    "unknown key, null": body([video(1, unannounced_7=None)]),
    "unknown key, object": body([video(1, unannounced_7={"a": 1})]),
    "unknown key in one of many records": body([video(1), video(2, unannounced=[1]), video(3)]),
    "unknown key in hashtag_info_list item": body(
        [video(1, hashtag_info_list=[{"hashtag_id": 1, "hashtag_name": "a", "extra": 2}])]
    ),
    "unknown null key in hashtag_info_list item": body(
        [video(1, hashtag_info_list=[{"hashtag_id": 1, "extra": None}])]
    ),
    "unknown key in video_label": body([video(1, video_label={"content": "x", "lang": "en"})]),
    "unknown key in video_tag item": body([video(1, video_tag=[{"number": 1, "kind": "t"}])]),
    # Error answers (in a 200).
    "error code": orjson.dumps(
        {"data": {}, "error": {"code": "rate_limit_exceeded", "message": "slow", "log_id": "L"}}
    ),
    "error code with data": orjson.dumps(
        {
            "data": {"result": [ONE], "cursor": 1, "has_more": False, "total": 1},
            "error": {"code": "internal_error", "message": "", "log_id": "L"},
        }
    ),
    "error code OK upper-case": orjson.dumps(
        {"data": {"result": [ONE]}, "error": {"code": "OK", "message": ""}}
    ),
    "error code a number": orjson.dumps({"data": {"result": [ONE]}, "error": {"code": 0}}),
    "error a string": orjson.dumps({"data": {"result": [ONE]}, "error": "invalid_client"}),
    # Bodies that are not one JSON object with a data object.
    "truncated": body([ONE])[:-20],
    "empty": b"",
    "blank": b"  \n ",
    "two values": body([ONE]) + body([ONE]),
    "two values on two lines": body([ONE]) + b"\n" + body([ONE]),
    "a value and a number": body([ONE]) + b"\n5",
    "a value and null": body([ONE]) + b"\nnull",
    "array body": b"[" + body([ONE]) + b"]",
    "empty array body": b"[]",
    "number body": b"5",
    "string body": b'"ok"',
    "empty object": b"{}",
    "data null": orjson.dumps({"data": None, "error": {"code": "ok"}}),
    "data missing": orjson.dumps({"error": {"code": "ok", "message": ""}}),
    "data a list": orjson.dumps({"data": [ONE]}),
    "result an object": body(ONE),
    "result a string": body("[]"),
    "result a number": body(3),
    "a number in result": body([ONE, 5]),
    "a list in result": body([[ONE]]),
    "a string in result": body(["x", ONE]),
    # Meta the general path reads value by value.
    "cursor a string": body([ONE], cursor="1"),
    "cursor a fraction": body([ONE], cursor=1.5),
    "has_more a string": body([ONE], has_more="false"),
    "has_more a number": body([ONE], has_more=0),
    "total beyond int64": with_raw(b'{"id":1}').replace(b'"total":1', b'"total":1' + b"0" * 20),
    # Duplicate keys (the general path keeps the last).
    "duplicate id": with_raw(b'{"id":1,"id":2,"create_time":1672531200}'),
    "duplicate result": b'{"data":{"result":[{"id":1}],"result":[{"id":2}]}}',
    "duplicate data": b'{"data":{"result":[{"id":1}]},"data":{"result":[{"id":2}]}}',
    "duplicate error code": b'{"data":{"result":[]},"error":{"code":"bad","code":"ok"}}',
    # Not JSON at all.
    "NaN": with_raw(b'{"id":NaN,"create_time":1672531200}'),
    "leading zero": with_raw(b'{"id":01,"create_time":1672531200}'),
    "trailing comma": b'{"data":{"result":[{"id":1},]}}',
    "raw control character": with_raw(b'{"id":1,"create_time":1,"username":"a\x01b"}'),
    "raw tab in a string": with_raw(b'{"id":1,"create_time":1,"username":"a\tb"}'),
    "raw newline in a string": with_raw(b'{"id":1,"create_time":1,"username":"a\nb"}'),
    "single quotes": b"{'data':{'result':[]}}",
    "HTML": b"<html><body>502 Bad Gateway</body></html>",
}


@pytest.mark.parametrize("raw", list(FALLBACKS.values()), ids=list(FALLBACKS))
def test_falls_back_on_what_the_general_path_must_decide(raw: bytes) -> None:
    assert DECODER(raw) is None


def test_every_prefix_of_a_body_falls_back() -> None:
    raw = body([video(1), None, video(2)], cursor=2, has_more=True, total=9)
    assert DECODER(raw) is not None
    for n in range(len(raw)):
        assert DECODER(raw[:n]) is None, raw[:n]


# Bugs: the reader takes these, the general path refuses them (bad_body, retried).

INVALID_UTF8 = {
    "invalid UTF-8 bytes": with_raw(b'{"id":1,"create_time":1672531200,"username":"a\xff\xfeb"}'),
    "overlong UTF-8": with_raw(b'{"id":1,"create_time":1672531200,"username":"a\xc0\xafb"}'),
    "UTF-8-encoded surrogate": with_raw(
        b'{"id":1,"create_time":1672531200,"username":"a\xed\xa0\x80b"}'
    ),
    "truncated UTF-8 sequence, nested": with_raw(
        b'{"id":1,"create_time":1672531200,"video_label":{"content":"\xe2\x82"}}'
    ),
}


@pytest.mark.parametrize("raw", list(INVALID_UTF8.values()), ids=list(INVALID_UTF8))
def test_falls_back_on_invalid_utf8_in_a_value(raw: bytes) -> None:
    with pytest.raises(Exception, match="not JSON"):
        general(raw)
    assert DECODER(raw) is None


def test_falls_back_on_a_byte_order_mark() -> None:
    raw = b"\xef\xbb\xbf" + body([ONE])
    with pytest.raises(Exception, match="not JSON"):
        general(raw)
    assert DECODER(raw) is None


_NULL_BODY = """
import ast
import sys
import pyarrow as pa
from harvester.api._pages import PageDecoder
decoder = PageDecoder("result", ["id", "create_time"], {"cursor": pa.int64()})
print(decoder(ast.literal_eval(sys.argv[1])))
"""


@pytest.mark.parametrize("raw", [b"null", b" null\n", b"null\n" + body([])])
def test_a_null_body_falls_back_without_crashing(raw: bytes) -> None:
    # In a child process: the failure this guards against is a segmentation fault.
    with pytest.raises(Exception, match=r"JSON|empty"):
        general(raw)
    proc = subprocess.run(
        [sys.executable, "-c", _NULL_BODY, repr(raw)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-500:]}"
    assert proc.stdout.strip() == "None"


# --------------------------------------------------------------------------- documented variants

_PHOTO = "https://effects.example/1.png"
#: (a record in a shape some documentation page shows, the same record in the catalogue's shape,
#:  what `_extra` keeps of the variant: None when nothing is left over).
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]] = {
    "video_tag as one struct": (
        video(1, video_tag={"number": 2, "type": "AIGC Type"}),
        video(1, video_tag=[{"number": 2, "type": "AIGC Type"}]),
        None,
    ),
    "favourites_count": (
        {k if k != "favorites_count" else "favourites_count": v for k, v in video(1).items()},
        video(1),
        None,
    ),
    "both spellings, agreeing": ({**video(1), "favourites_count": 2}, video(1), None),
    "both spellings, disagreeing": (
        {**video(1), "favourites_count": 3},
        video(1),
        {"favourites_count": 3},
    ),
    "effect item with its photo": (
        video(
            1, effect_info_list=[{"effect_id": "1", "effect_name": "x", "effect_photo_url": _PHOTO}]
        ),
        video(
            1, effect_info_list=[{"effect_id": "1", "effect_name": "x", "effect_photo_url": _PHOTO}]
        ),
        None,
    ),
    "unknown key in an effect item": (
        video(1, effect_info_list=[{"effect_id": "1", "effect_name": "x", "effect_type": "f"}]),
        video(1, effect_info_list=[{"effect_id": "1", "effect_name": "x"}]),
        {"effect_info_list": [{"effect_id": "1", "effect_name": "x", "effect_type": "f"}]},
    ),
    "unknown key in video_label": (
        video(1, video_label={"content": "lbl", "label_id": 4}),
        video(1),
        {"video_label": {"content": "lbl", "label_id": 4}},
    ),
}


@pytest.mark.parametrize(
    ("variant", "canonical", "extra"), list(VARIANTS.values()), ids=list(VARIANTS)
)
def test_documented_variants_read_as_the_catalogue_shape(
    variant: dict[str, Any], canonical: dict[str, Any], extra: dict[str, Any] | None
) -> None:
    """Both decoders agree: the fast path leaves a variant to the general path, which stores it
    in the catalogue's shape, and keeps whatever the catalogue has no place for in `_extra`."""
    canonical_rows = assert_decodes_like_general(body([canonical]))
    raw = body([variant])
    if variant == canonical:
        assert DECODER(raw) is not None
        return
    assert DECODER(raw) is None
    records = fresh_records(coerce_records(general(raw)["result"]), set(), cleaned=True)
    options: dict[str, Any] = {
        "leaf_key": LEAF,
        "window": (T0, T0 + 86_400),
        "source": "rqs",
        "retrieved_at": NOW,
    }
    got = normalise_page(records, LAYOUT, **options)
    want = normalise_rows(fresh_rows(canonical_rows, set()), LAYOUT, **options)
    assert got.row_count == want.row_count == 1
    for name in LAYOUT.schema.names:
        if name != "_extra":
            assert got.batch.column(name).equals(want.batch.column(name)), name
    kept = got.batch.column("_extra")[0].as_py()
    assert (orjson.loads(kept) if kept is not None else None) == extra
    assert not (got.unknown_fields - {"favourites_count"})


# --------------------------------------------------------------------------- takes, same rows


def test_a_plain_page_decodes_like_the_general_path() -> None:
    raw = body([video(i) for i in range(20)], cursor=20, has_more=True, total=45)
    rows = assert_decodes_like_general(raw)
    assert len(rows) == 20 and rows.null_count == 0
    out = DECODER(raw)
    assert out is not None
    assert (out["cursor"], out["has_more"], out["total"]) == (20, True, 45)


def test_int64_bounds_are_taken_exactly() -> None:
    raw = with_raw(b'{"id":9223372036854775807,"create_time":-9223372036854775808}')
    rows = assert_decodes_like_general(raw)
    assert rows.to_pylist()[0]["id"] == INT64_MAX
    assert rows.to_pylist()[0]["create_time"] == -(1 << 63)


def test_a_pretty_printed_body_with_newlines() -> None:
    pretty = orjson.dumps(
        {
            "data": {"result": [video(1), video(2)], "cursor": 2, "has_more": False, "total": 2},
            "error": {"code": "ok", "message": "", "log_id": "L"},
        },
        option=orjson.OPT_INDENT_2,
    )
    assert pretty.count(b"\n") > 50
    assert_decodes_like_general(pretty)
    assert_decodes_like_general(pretty.replace(b"\n", b"\r\n") + b"\n")


def test_missing_fields_are_nulls() -> None:
    sparse = [
        {"id": 1, "create_time": T0},
        {k: v for k, v in video(2).items() if k not in ("username", "video_label", "video_tag")},
        {"id": 3, "create_time": T0 + 1, "hashtag_info_list": [{"hashtag_id": 4}, {}]},
        {},
    ]
    rows = assert_decodes_like_general(body(sparse))
    assert rows.to_pylist()[0]["username"] is None
    assert rows.to_pylist()[2]["hashtag_info_list"] == [
        {"hashtag_id": 4, "hashtag_name": None, "hashtag_description": None},
        {"hashtag_id": None, "hashtag_name": None, "hashtag_description": None},
    ]


def test_null_lists_and_null_values_inside_lists() -> None:
    recs = [
        video(1, hashtag_names=None, hashtag_info_list=None, video_label=None),
        video(2, hashtag_names=[None, "a", None], effect_ids=[]),
        video(3, hashtag_info_list=[None, {"hashtag_id": 5, "hashtag_name": None}]),
        video(4, video_tag=[], sticker_info_list=[None]),
    ]
    assert_decodes_like_general(body(recs))


@pytest.mark.parametrize(
    "result",
    [[None], [None, None, video(1)], [video(1), None], [video(1), None, video(2), None]],
    ids=["only null", "leading nulls", "trailing null", "interleaved"],
)
def test_null_items_are_null_rows_that_fresh_rows_drops(result: list[Any]) -> None:
    rows = assert_decodes_like_general(body(result))
    assert len(rows) == len(result)
    assert rows.null_count == result.count(None)
    assert [r is None for r in rows.to_pylist()] == [r is None for r in result]
    kept = fresh_rows(rows, set())
    assert kept.null_count == 0
    assert kept.to_pylist() == [expand(r, RECORD) for r in fresh_records(result, set())]


def test_a_null_or_missing_result_is_an_empty_page() -> None:
    for raw in (body(None, cursor=5, has_more=False, total=5), orjson.dumps({"data": {}})):
        rows = assert_decodes_like_general(raw)
        assert len(rows) == 0


def test_an_empty_result_with_meta() -> None:
    raw = body([], cursor=10_000, has_more=False, total=10_000)
    rows = assert_decodes_like_general(raw)
    assert len(rows) == 0
    out = DECODER(raw)
    assert out is not None and (out["cursor"], out["has_more"], out["total"]) == (
        10_000,
        False,
        10_000,
    )


def test_absent_and_null_meta_are_none() -> None:
    for raw in (body([ONE]), body([ONE], cursor=None, has_more=None, total=None)):
        out = DECODER(raw)
        assert out is not None
        assert (out["cursor"], out["has_more"], out["total"]) == (None, None, None)


def test_error_ok_or_absent_and_extra_keys_outside_records() -> None:
    no_error = orjson.dumps({"data": {"result": [ONE], "cursor": 1}})
    null_code = orjson.dumps({"data": {"result": [ONE]}, "error": {"code": None}})
    null_error = orjson.dumps({"data": {"result": [ONE]}, "error": None})
    extras = orjson.dumps(
        {
            "data": {"result": [ONE], "search_id": "s", "cursor": 1},
            "error": {"code": "ok", "message": "", "log_id": "L", "detail": {"x": 1}},
            "request_id": 7,
        }
    )
    for raw in (no_error, null_code, null_error, extras):
        assert_decodes_like_general(raw)


CONTROL = "\x00\x01\x08\x0b\x0c\x0d\x1b\x1f\x7f"


def test_control_characters_are_cleaned_as_the_general_path_cleans() -> None:
    dirty = video(
        1,
        username="a\x00b\x01c",
        video_description="tab\tand newline\nkept, \r\x1b\x7f gone",
        voice_to_text="\x0b\x0c",
        region_code="U\x08S",
        hashtag_names=["\x1fa", None, "b\x7f"],
        video_mention_list=["@\x00x"],
        hashtag_info_list=[{"hashtag_id": 1, "hashtag_name": "h\x01", "hashtag_description": "\r"}],
        sticker_info_list=[None, {"sticker_id": "\x7f9", "sticker_name": "ok"}],
        video_label={"content": "\x01lbl\x02"},
        video_tag=[{"number": 1, "type": "t\x1f"}],
        video_sticker_id="\x0042",
    )
    raw = body([dirty, video(2), None], cursor=3, has_more=False, total=3)
    assert may_hold_control(raw)
    rows = assert_decodes_like_general(raw)
    got = rows.to_pylist()
    assert got[0] == expand(clean(dirty), RECORD)
    assert got[1] == expand(video(2), RECORD)
    text = repr(got)
    assert not any(c in text for c in ("\\x00", "\\x01", "\\x1b", "\\x7f", "\\r", "\\x0b"))
    assert "\\t" in text and "\\n" in text  # tab and newline are kept


def test_raw_del_bytes_are_cleaned_too() -> None:
    # JSON need not escape DEL: the body holds it raw.
    raw = body([video(1, username="a\x7fb", video_label={"content": "\x7f"})])
    assert b"\x7f" in raw
    rows = assert_decodes_like_general(raw)
    assert rows.to_pylist()[0]["username"] == "ab"
    assert rows.to_pylist()[0]["video_label"] == {"content": ""}


def test_escapes_that_are_not_control_characters_are_kept() -> None:
    raw = with_raw(
        b'{"id":1,"create_time":1672531200,"username":"a\\/b\\\\c\\"d\\u00e9\\ud83d\\ude00",'
        b'"video_description":"\\\\u0001 is text"}'
    )
    rows = assert_decodes_like_general(raw)
    assert rows.to_pylist()[0]["username"] == 'a/b\\c"dé😀'
    assert rows.to_pylist()[0]["video_description"] == "\\u0001 is text"


TEXT = st.text(
    st.one_of(st.sampled_from(list(CONTROL + "\t\n")), st.characters(exclude_categories=["Cs"])),
    max_size=12,
)
MAYBE_TEXT = st.none() | TEXT


@st.composite
def dirty_records(draw: st.DrawFn) -> list[Any]:
    n = draw(st.integers(0, 6))
    out: list[Any] = []
    for i in range(n):
        if draw(st.integers(0, 9)) == 0:
            out.append(None)
            continue
        rec = video(
            i,
            username=draw(MAYBE_TEXT),
            video_description=draw(TEXT),
            region_code=draw(MAYBE_TEXT),
            hashtag_names=draw(st.none() | st.lists(MAYBE_TEXT, max_size=3)),
            hashtag_info_list=draw(
                st.none()
                | st.lists(
                    st.none()
                    | st.fixed_dictionaries(
                        {"hashtag_id": st.integers(-(1 << 63), INT64_MAX)},
                        optional={"hashtag_name": MAYBE_TEXT, "hashtag_description": TEXT},
                    ),
                    max_size=3,
                )
            ),
            video_label=draw(st.none() | st.fixed_dictionaries({"content": MAYBE_TEXT})),
        )
        for name in draw(st.sets(st.sampled_from(FIELDS[2:]), max_size=3)):
            del rec[name]
        out.append(rec)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dirty_records(), st.booleans())
def test_any_well_typed_page_decodes_like_the_general_path(
    records: list[Any], pretty: bool
) -> None:
    data = {"result": records, "cursor": len(records), "has_more": False, "total": len(records)}
    raw = orjson.dumps(
        {"data": data, "error": {"code": "ok", "message": "", "log_id": "L"}},
        option=orjson.OPT_INDENT_2 if pretty else 0,
    )
    rows = assert_decodes_like_general(raw)
    assert rows.to_pylist() == [expand(clean(r), RECORD) for r in records]


def test_decoded_pages_dedupe_like_general_pages_across_a_seen_set() -> None:
    seen_fast: set[int] = {video(3)["id"]}
    seen_general = set(seen_fast)
    pages = [
        [video(1), video(2), video(2), video(3)],
        [video(2), None, video(4), {"create_time": T0}, {"create_time": T0}],
        [video(4), video(5, id=None), video(5, id=None)],
    ]
    for page in pages:
        raw = body(page)
        rows, _ = fast_rows(raw)
        records = coerce_records(general(raw)["result"])
        assert_same_batches(rows, records, seen=(seen_fast, seen_general))
    assert seen_fast == {video(i)["id"] for i in (1, 2, 3, 4)}


# --------------------------------------------------------------------------- simulator

FAULTS = {
    "control_chars": 0.15,
    "wrong_types": 0.02,
    "missing_fields": 0.08,
    "extra_fields": 0.02,
    "field_variants": 0.05,
}
SIM_START = 1_641_081_600  # 2022-01-02T00:00:00Z
SIM_FIELDS: tuple[str, ...] = FIELDS


async def result_bodies(sim: Simulator, start: int, end: int, page: int) -> list[bytes]:
    """Every raw result body of one task over [start, end), fetched over loopback HTTP."""
    groups = [
        {
            "operator": "and",
            "conditions": [
                {"field": "create_time", "operator": "GTE", "field_values": [str(start)]},
                {"field": "create_time", "operator": "LT", "field_values": [str(end)]},
            ],
        }
    ]
    async with aiohttp.ClientSession() as s:
        form = {
            "client_key": "sim-client-key",
            "client_secret": "sim-client-secret",
            "grant_type": "client_credentials",
        }
        async with s.post(sim.base_url + "/v2/oauth/token/", data=form) as r:
            assert r.status == 200
            token = (await r.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        async def call(verb: str, payload: dict[str, Any]) -> bytes:
            url = f"{sim.base_url}/v2/research/query_task/{verb}/"
            async with s.post(url, json=payload, headers=headers) as r:
                raw = await r.read()
                assert r.status == 200, raw
                return raw

        create = {
            "category": "video",
            "condition_groups": groups,
            "fields": ",".join(SIM_FIELDS),
            "limit": 100_000,
        }
        task_id = orjson.loads(await call("create", create))["data"]["task_id"]
        status = orjson.loads(await call("status", {"task_id": task_id}))["data"]["status"]
        assert status == "Completed"
        bodies: list[bytes] = []
        cursor = 0
        while True:
            raw = await call("result", {"task_id": task_id, "cursor": cursor, "max_count": page})
            bodies.append(raw)
            data = orjson.loads(raw)["data"]
            if not data["has_more"]:
                return bodies
            cursor = data["cursor"]


@pytest.mark.anyio
async def test_simulator_pages_decode_the_same_either_way() -> None:
    async with running_simulator(
        "clean",
        seed=11,
        faults=FAULTS,
        rqs_created=0.0,
        rqs_validating=0.0,
        rqs_processing=0.0,
        rate_limit_per_minute=100_000,
        videos_per_day=150,
    ) as sim:
        bodies = await result_bodies(sim, SIM_START, SIM_START + 2 * 86_400, page=8)
        injected = dict(sim.faults.counts)
    # Normalised into a narrower window, so that some rows fall outside.
    window = (SIM_START + 6 * 3600, SIM_START + 42 * 3600)
    lay = layout(SIM_FIELDS, ("create_date", "region_code"))
    seen_fast: set[int] = set()
    seen_general: set[int] = set()
    fast = fell_back = fast_dirty = fast_sparse = 0
    for raw in bodies:
        data = general(raw)
        records = coerce_records(data["result"])
        out = DECODER(raw)
        if out is None:
            fell_back += 1
            # Keep both seen-sets in step, as a backend would.
            fresh_records(records, seen_general, cleaned=True)
            seen_fast.clear()
            seen_fast.update(seen_general)
            continue
        fast += 1
        fast_dirty += may_hold_control(raw)
        fast_sparse += any(set(r) != set(SIM_FIELDS) for r in records)
        rows = out["result"]
        assert rows.to_pylist() == [expand(r, RECORD) for r in records]
        for name in META:
            assert out[name] == data.get(name)
        assert_same_batches(rows, records, lay, window, (seen_fast, seen_general))
    assert {"control_chars", "wrong_types", "missing_fields", "extra_fields"} <= set(injected)
    assert injected.get("field_variants")
    assert fast >= 3 and fell_back >= 3, (fast, fell_back)
    assert fast_dirty and fast_sparse, (fast_dirty, fast_sparse)
