"""A window's second dimension: sub-query keys read back, and a query cut by the values of its
longest IN list with every video kept by exactly one sub-query."""

from __future__ import annotations

import pytest

from harvester.plan import Window, parse_leaf_key, sub_key
from harvester.query import RestCondition, RestQuery, value_split
from harvester.sink._files import check_key

DAY = 86_400


def test_sub_query_keys_name_their_window_and_value() -> None:
    window = Window(19_000 * DAY, 19_001 * DAY)
    key = sub_key(window.key, 3, "user.name-ü")
    assert key == f"{window.key}_q3_username" and check_key(key) == key
    leaf = parse_leaf_key(key)
    assert (leaf.window, leaf.index, leaf.suffix) == (window, 3, "_q3_username")
    whole = parse_leaf_key(window.key)
    assert (whole.window, whole.index, whole.suffix) == (window, None, "")
    half = window.halves()[0]
    assert parse_leaf_key(half.key + leaf.suffix).window == half
    for bad in ("20230101-20230102_qx_NL", "nonsense", "20230101-2023010_q1_NL"):
        with pytest.raises(ValueError):
            parse_leaf_key(bad)


def test_the_longest_in_list_of_the_and_is_cut() -> None:
    regions = RestCondition("IN", "region_code", ("NL", "BE"))
    tags = RestCondition("IN", "hashtag_name", ("a", "b", "c"))
    words = RestCondition("IN", "keyword", ("x", "y", "z", "w"))  # substrings: not a list to cut
    split = value_split(RestQuery(and_=(regions, tags, words)))
    assert split is not None and split.values == ("a", "b", "c")
    sub = split.sub_query(1)
    assert sub.and_ == (regions, RestCondition("EQ", "hashtag_name", ("b",)), words)
    # An `or` list cannot be cut: a video may match the query through another of its members.
    assert value_split(RestQuery(or_=(regions, tags))) is None
    assert value_split(RestQuery(and_=(RestCondition("EQ", "region_code", ("NL",)),))) is None


def test_every_video_is_kept_by_one_sub_query_only() -> None:
    split = value_split(RestQuery(and_=(RestCondition("IN", "hashtag_name", ("a", "b", "c")),)))
    assert split is not None
    videos = [{"id": 1, "hashtag_names": ["b", "a"]}, {"id": 2, "hashtag_names": ["C", "b"]}]
    keepers = {
        v["id"]: [i for i in range(3) if split.sub_query(i).matches(v) and split.keeps(i)(v)]
        for v in videos
    }
    assert keepers == {1: [0], 2: [1]}
