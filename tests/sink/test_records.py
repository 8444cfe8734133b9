from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from harvester.api._records import fresh_records
from harvester.query import clean_string
from harvester.sink import layout, normalise_page
from harvester.sink.records import PageResult

from ._data import DAY, FULL, JAN1, NOW, video

WINDOW = (JAN1, JAN1 + DAY)


def norm(page: list[Any], lay: Any = FULL) -> PageResult:
    return normalise_page(
        page, lay, leaf_key="20230101-20230101", window=WINDOW, source="research-api",
        retrieved_at=NOW,
    )  # fmt: skip


def test_clean_page_keeps_everything_and_matches_the_schema() -> None:
    page = [video(i, JAN1 + i) for i in range(50)]
    r = norm(page)
    assert r.row_count == 50 and r.batch.schema == FULL.schema
    row = r.batch.slice(3, 1).to_pylist()[0]
    assert row["id"] == page[3]["id"] and row["hashtag_info_list"] == page[3]["hashtag_info_list"]
    assert row["_extra"] is None and row["_source"] == "research-api"
    assert row["_shard"] == "20230101-20230101" and row["create_date"] == "2023-01-01"
    assert row["_retrieved_at"] == NOW


def test_window_and_identity_filters_are_counted() -> None:
    page: list[Any] = [
        video(1, JAN1 - 1),  # before the window
        video(2, JAN1 + DAY),  # end is exclusive
        video(3, JAN1),
        {"create_time": JAN1},  # no id
        video(4, JAN1, id="not a number"),
        video(5, JAN1, create_time=None),
        "not an object",
        video(6, JAN1, id="7000000000000000006", create_time=str(JAN1 + 5)),  # strings coerce
    ]
    r = norm(page)
    assert (r.row_count, r.outside, r.invalid) == (2, 2, 4)
    assert r.batch.column("id").to_pylist() == [
        7_000_000_000_000_000_003,
        7_000_000_000_000_000_006,
    ]


def test_dedupe_is_the_api_layer_s_and_the_sink_keeps_what_it_is_given() -> None:
    seen = {video(1, JAN1)["id"]}
    page = [video(1, JAN1), video(2, JAN1), video(2, JAN1 + 1), video(3, JAN1)]
    fresh = fresh_records(page, seen)  # within the page and against the leaf's earlier pages
    r = norm(fresh)
    assert r.batch.column("id").to_pylist() == [video(2, JAN1)["id"], video(3, JAN1)["id"]]
    assert seen == {video(i, JAN1)["id"] for i in (1, 2, 3)}
    # One owner: handed a repeat, the sink does not second-guess the API layer.
    assert norm([video(2, JAN1), video(2, JAN1)]).row_count == 2


def test_wrong_types_are_coerced_or_kept_in_extra() -> None:
    page = [
        video(1, JAN1, like_count="123", is_stem_verified="true", username=42, view_count=7.0),
        video(2, JAN1, like_count=1.5, comment_count="lots", is_stem_verified=[1]),
        video(3, JAN1, hashtag_names=["ok", 5, {"x": 1}], video_label="plain"),
        video(4, JAN1, share_count=2**70, video_tag=[{"number": "9", "type": "t", "new": 1}]),
    ]
    r = norm(page)
    rows = r.batch.to_pylist()
    assert rows[0]["like_count"] == 123 and rows[0]["is_stem_verified"] is True
    assert rows[0]["username"] == "42" and rows[0]["view_count"] == 7 and rows[0]["_extra"] is None
    assert rows[1]["like_count"] is None and rows[1]["comment_count"] is None
    assert json.loads(rows[1]["_extra"]) == {
        "like_count": 1.5, "comment_count": "lots", "is_stem_verified": [1],
    }  # fmt: skip
    assert rows[2]["hashtag_names"] == ["ok", "5"] and rows[2]["video_label"] is None
    extra2 = json.loads(rows[2]["_extra"])
    assert extra2["hashtag_names"] == ["ok", 5, {"x": 1}] and extra2["video_label"] == "plain"
    assert rows[3]["share_count"] is None and rows[3]["video_tag"] == [{"number": 9, "type": "t"}]
    extra3 = json.loads(rows[3]["_extra"])
    assert extra3["share_count"] == 2**70 and extra3["video_tag"][0]["new"] == 1
    assert r.uncoerced == 7


def test_unknown_fields_go_to_extra() -> None:
    lay = layout(["username"])
    r = norm([video(1, JAN1, brand_new={"a": [1, 2]})], lay)
    extra = json.loads(r.batch.column("_extra")[0].as_py())
    assert extra["brand_new"] == {"a": [1, 2]} and extra["view_count"] == 10  # not chosen
    assert "brand_new" in r.unknown_fields and r.uncoerced == 0


def test_control_characters_are_removed_everywhere() -> None:
    dirty = "a\x00b\x07c\td\ne\x1f\x7f"
    page = [
        video(1, JAN1, username=dirty, hashtag_names=[dirty], video_label={"content": dirty},
              hashtag_info_list=[{"hashtag_id": 1, "hashtag_name": dirty}]),
    ]  # fmt: skip
    # Cleaning is the API layer's (it sees every record first); the sink stores what it gets.
    row = norm(fresh_records(page, set())).batch.to_pylist()[0]
    clean = clean_string(dirty)
    assert clean == "abc\td\ne"
    assert row["username"] == clean and row["hashtag_names"] == [clean]
    assert row["video_label"]["content"] == clean
    assert row["hashtag_info_list"][0]["hashtag_name"] == clean


def test_a_partition_value_the_path_cannot_carry_is_kept() -> None:
    lay = layout(["region_code"], ("region_code",))
    long = "R" * 300
    rows = norm([video(1, JAN1, region_code=long), video(2, JAN1, region_code="")], lay)
    extras = [json.loads(e) for e in rows.batch.column("_extra").to_pylist()]
    assert [e["region_code"] for e in extras] == [long, ""]


def test_empty_page() -> None:
    r = norm([])
    assert r.row_count == 0 and r.batch.schema == FULL.schema


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3)
    ),
    max_leaves=8,
)
field_names = st.sampled_from([*FULL.fields, "other"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.dictionaries(field_names, json_values, max_size=8), max_size=6))
def test_normalise_never_raises(page: list[dict[str, Any]]) -> None:
    for i, rec in enumerate(page):
        if i % 2:
            rec.update(id=i, create_time=JAN1 + i)
    r = norm(page)
    assert r.batch.schema == FULL.schema
    assert r.row_count + r.invalid + r.outside == len(page)
    pa.Table.from_batches([r.batch]).validate(full=True)
