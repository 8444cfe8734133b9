"""clean_strings cleans inside Arrow buffers exactly what `clean` cleans on Python values, and
hands back the very same array when there is nothing to clean."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harvester._arrow import arrow_type, clean_strings, has_string
from harvester.api._records import clean
from harvester.fields import CATALOGUE

CONTROL = "\x00\x01\x08\x0b\x0c\x0d\x0e\x1b\x1f\x7f"
HASHTAGS = pa.list_(
    pa.struct(
        [
            ("hashtag_id", pa.int64()),
            ("hashtag_name", pa.string()),
            ("hashtag_description", pa.string()),
        ]
    )
)
NESTED = pa.struct(
    [
        ("name", pa.string()),
        ("n", pa.int64()),
        ("tags", pa.list_(pa.string())),
        ("items", pa.list_(pa.struct([("k", pa.string()), ("v", pa.list_(pa.string()))]))),
        ("label", pa.struct([("content", pa.string())])),
    ]
)


def check(arr: pa.Array) -> pa.Array:
    """clean_strings(arr) is valid, typed as arr and equal to `clean` on the Python values."""
    before = arr.to_pylist()
    out = clean_strings(arr)
    out.validate(full=True)
    assert out.type.equals(arr.type)
    assert len(out) == len(arr)
    assert out.to_pylist() == clean(before)
    assert arr.to_pylist() == before  # the input is left alone
    return out


def test_a_string_array() -> None:
    arr = pa.array(["a\x00b", None, "tab\tnew\nline", "\r\x7f", "", "ok", "é\x01😀"])
    out = check(arr)
    assert out.to_pylist() == ["ab", None, "tab\tnew\nline", "", "", "ok", "é😀"]


def test_every_control_character_and_none_else() -> None:
    every = "".join(chr(c) for c in range(0x00, 0xA0))
    out = check(pa.array([every]))
    assert out.to_pylist() == ["\t\n" + "".join(chr(c) for c in range(0x20, 0x7F)) + every[0x80:]]


def test_a_list_of_strings() -> None:
    check(pa.array([["a\x01", None, "b"], None, [], ["\x7f\x7f"], ["c"]], pa.list_(pa.string())))


def test_a_list_of_structs_of_strings() -> None:
    arr = pa.array(
        [
            [{"hashtag_id": 1, "hashtag_name": "a\x01", "hashtag_description": "\r"}, None],
            None,
            [],
            [{"hashtag_id": None, "hashtag_name": None, "hashtag_description": "d\x1b"}],
            [{"hashtag_id": 3, "hashtag_name": "ok", "hashtag_description": "ok"}],
        ],
        HASHTAGS,
    )
    out = check(arr)
    assert out.to_pylist()[0][0]["hashtag_name"] == "a"


def test_deeply_nested_with_null_structs() -> None:
    arr = pa.array(
        [
            {
                "name": "\x00n",
                "n": 1,
                "tags": ["\x01", None],
                "items": [{"k": "k\x7f", "v": ["\x0b", "x"]}, None, {"k": None, "v": None}],
                "label": {"content": "\x1f"},
            },
            None,
            {"name": None, "n": None, "tags": None, "items": None, "label": None},
            {"name": "ok", "n": 2, "tags": [], "items": [], "label": {"content": None}},
        ],
        NESTED,
    )
    check(arr)


def test_a_null_struct_hides_a_dirty_child() -> None:
    child = pa.array(["\x01hidden", "seen\x02"])
    arr = pa.StructArray.from_arrays([child], names=["a"], mask=pa.array([True, False]))
    out = check(arr)
    assert out.to_pylist() == [None, {"a": "seen"}]
    assert out.is_null().to_pylist() == [True, False]


def test_a_null_list_hides_dirty_values() -> None:
    values = pa.array(["\x01", "x\x02", "y"])
    offsets = pa.array([0, 2, 3], pa.int32())
    arr = pa.ListArray.from_arrays(offsets, values, mask=pa.array([True, False]))
    out = check(arr)
    assert out.to_pylist() == [None, ["y"]]


def test_sliced_strings_and_structs() -> None:
    strings = pa.array(["\x01a", "b\x02", None, "c", "\x7f"])
    for lo, n in [(1, 4), (2, 2), (3, 1), (0, 0), (4, 1)]:
        check(strings.slice(lo, n))
    structs = pa.array(
        [{"a": "\x01", "b": {"c": "x\x02"}}, None, {"a": "ok", "b": None}, {"a": "\x7f", "b": {}}],
        pa.struct([("a", pa.string()), ("b", pa.struct([("c", pa.string())]))]),
    )
    for lo in range(4):
        check(structs.slice(lo))


@pytest.mark.parametrize(
    "arr",
    [
        pa.array([["a"], ["b\x01"], ["c"]], pa.list_(pa.string())).slice(1),
        pa.array([["a"], None, ["b\x01"]], pa.list_(pa.string())).slice(1),
        pa.array(
            [
                [{"hashtag_id": 1, "hashtag_name": "x", "hashtag_description": None}],
                [{"hashtag_id": 2, "hashtag_name": "\x01y", "hashtag_description": None}],
            ],
            HASHTAGS,
        ).slice(1),
        pa.array(
            [{"tags": ["a"]}, {"tags": ["\x01b"]}], pa.struct([("tags", pa.list_(pa.string()))])
        ).slice(1),
    ],
    ids=["list<string>", "list<string> after a null", "list<struct>", "struct<list<string>>"],
)
def test_sliced_lists(arr: pa.Array) -> None:
    check(arr)


# --------------------------------------------------------------------------- no copy


@pytest.mark.parametrize(
    "arr",
    [
        pa.array(["a", None, "tab\t", "new\nline", "é😀\x80\x9f"]),
        pa.array([["a", None], None, []], pa.list_(pa.string())),
        pa.array([[{"hashtag_id": 1, "hashtag_name": "x", "hashtag_description": None}]], HASHTAGS),
        pa.array([{"name": "a", "n": 1, "tags": ["t"], "items": None, "label": None}], NESTED),
        pa.array([1, 2, None], pa.int64()),
        pa.array([True, None], pa.bool_()),
        pa.array([], pa.string()),
        pa.array([None, None], pa.string()),
        pa.array(["x\x01", "clean", "y"]).slice(1),  # the dirty value is outside the slice
    ],
    ids=[
        "strings",
        "list",
        "list<struct>",
        "nested",
        "int64",
        "bool",
        "empty",
        "all null",
        "slice",
    ],
)
def test_an_array_without_control_characters_is_returned_as_is(arr: pa.Array) -> None:
    out = clean_strings(arr)
    assert out.to_pylist() == arr.to_pylist()
    if arr.type.equals(pa.string()) and arr.offset:
        # The scan reads the whole data buffer, beyond the slice: a copy is allowed here,
        # as long as the values are right.
        return
    assert out is arr


def test_only_the_dirty_column_is_rewritten() -> None:
    arr = pa.array(
        [{"name": "a\x01", "n": 1, "tags": ["clean"], "items": None, "label": {"content": "c"}}],
        NESTED,
    )
    out = clean_strings(arr)
    assert out is not arr
    tags_before, tags_after = arr.field("tags"), out.field("tags")
    assert tags_after.values.buffers()[2].address == tags_before.values.buffers()[2].address
    label_before, label_after = arr.field("label").field(0), out.field("label").field(0)
    assert label_after.buffers()[2].address == label_before.buffers()[2].address


def test_has_string_for_every_catalogue_type() -> None:
    for name, f in CATALOGUE.items():
        t = arrow_type(f.type)
        assert has_string(t) == ("string" in str(t)), name


# --------------------------------------------------------------------------- properties

TEXT = st.text(
    st.one_of(st.sampled_from(list(CONTROL + "\t\n")), st.characters(exclude_categories=["Cs"])),
    max_size=6,
)


def values_of(t: pa.DataType) -> st.SearchStrategy[Any]:
    if pa.types.is_string(t):
        return st.none() | TEXT
    if pa.types.is_int64(t):
        return st.none() | st.integers(-(1 << 63), (1 << 63) - 1)
    if pa.types.is_list(t):
        return st.none() | st.lists(values_of(t.value_type), max_size=3)
    assert pa.types.is_struct(t)
    return st.none() | st.fixed_dictionaries({f.name: values_of(f.type) for f in t})


@settings(max_examples=200, deadline=None)
@given(st.lists(values_of(NESTED), max_size=8))
def test_nested_arrays_clean_like_python(values: list[Any]) -> None:
    check(pa.array(values, NESTED))


@settings(max_examples=200, deadline=None)
@given(st.lists(values_of(HASHTAGS), max_size=8))
def test_lists_of_structs_clean_like_python(values: list[Any]) -> None:
    check(pa.array(values, HASHTAGS))


FLAT = pa.struct([("a", pa.string()), ("b", pa.struct([("c", pa.string()), ("d", pa.int64())]))])


@settings(max_examples=200, deadline=None)
@given(st.lists(values_of(FLAT), max_size=8), st.data())
def test_sliced_structs_without_lists_clean_like_python(
    values: list[Any], data: st.DataObject
) -> None:
    arr = pa.array(values, FLAT)
    lo = data.draw(st.integers(0, len(values)))
    n = data.draw(st.integers(0, len(values) - lo))
    check(arr.slice(lo, n))
