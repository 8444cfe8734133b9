"""Query validation, evaluation and translation (harvester/query.py)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harvester import QueryError
from harvester.query import (
    REGION_CODES,
    check_region_codes,
    clean_string,
    parse_rest_query,
    parse_seed_query,
    translate_rest,
    translate_to_rest,
    validate_fields,
    validate_limit,
)


def group(op: str, *conds: dict[str, Any]) -> dict[str, Any]:
    return {"operator": op, "conditions": list(conds)}


def cond(field: str, op: str, *values: Any) -> dict[str, Any]:
    return {"field": field, "operator": op, "field_values": list(values)}


def rest(field: str, op: str, *values: Any) -> dict[str, Any]:
    return {"field_name": field, "operation": op, "field_values": list(values)}


# (description, condition_groups, the part of the message that names the problem, ... the fix)
INVALID_SEED: list[tuple[str, Any, str, str]] = [
    ("not a list", {"operator": "and"}, "must be a list", "operator"),
    ("group not a table", ["and"], "condition_groups[0]", "operator"),
    ("bad group operator", [group("xor", cond("id", "EQ", "1"))], "'xor'", '"and", "or", "not"'),
    ("empty conditions", [group("and")], "non-empty list", "conditions"),
    ("unknown group key", [{"operator": "and", "conditions": [], "x": 1}], "'x'", "allowed"),
    ("unknown field", [group("and", cond("likes", "EQ", "1"))], "'likes'", "like_count"),
    (
        "favorites not a condition",
        [group("and", cond("favorites_count", "GT", "1"))],
        "'favorites_count'",
        "condition fields are",
    ),
    ("GT on id", [group("and", cond("id", "GT", "1"))], "'GT' is not allowed for id", "EQ, IN"),
    ("LIKE on username", [group("and", cond("username", "LIKE", "%a%"))], "username", "EQ, IN"),
    (
        "EQ on hashtags",
        [group("and", cond("hashtag_names", "EQ", "x"))],
        "hashtag_names",
        "CONTAINS",
    ),
    (
        "CONTAINS on region",
        [group("and", cond("region_code", "CONTAINS", "NL"))],
        "region_code",
        "EQ, IN",
    ),
    ("unknown operator", [group("and", cond("like_count", "BETWEEN", "1"))], "'BETWEEN'", "GTE"),
    (
        "missing operator",
        [group("and", {"field": "id", "field_values": ["1"]})],
        "operator",
        "EQ, IN",
    ),
    (
        "missing values",
        [group("and", {"field": "id", "operator": "EQ"})],
        "field_values",
        "non-empty list",
    ),
    ("empty values", [group("and", cond("id", "IN"))], "field_values", "non-empty list"),
    ("non-int id", [group("and", cond("id", "EQ", "abc"))], "'abc' is not an integer", "int64"),
    ("float count", [group("and", cond("like_count", "GT", "1.5"))], "not an integer", "int64"),
    ("int64 overflow", [group("and", cond("music_id", "EQ", str(2**63)))], "does not fit", "int64"),
    (
        "two values for EQ",
        [group("and", cond("region_code", "EQ", "NL", "DE"))],
        "exactly one value",
        "use IN",
    ),
    (
        "two values for GT",
        [group("and", cond("view_count", "GT", "1", "2"))],
        "exactly one value",
        "use IN",
    ),
    (
        "empty LIKE",
        [group("and", cond("video_description", "LIKE", ""))],
        "LIKE pattern is empty",
        "%election%",
    ),
    (
        "LIKE lone escape",
        [group("and", cond("video_description", "LIKE", "abc\\"))],
        "lone escape",
        "backslash",
    ),
    (
        "value not a string",
        [group("and", cond("region_code", "EQ", {"a": 1}))],
        "values must be",
        "strings",
    ),
    ("bool value", [group("and", cond("like_count", "EQ", True))], "True", "strings"),
    (
        "unknown condition key",
        [group("and", {**cond("id", "EQ", "1"), "value": 2})],
        "'value'",
        "allowed keys",
    ),
    (
        "missing field",
        [group("and", {"operator": "EQ", "field_values": ["1"]})],
        "field is missing",
        "region_code",
    ),
]


@pytest.mark.parametrize(
    ("what", "obj", "problem", "fix"), INVALID_SEED, ids=[c[0] for c in INVALID_SEED]
)
def test_invalid_seed_query_gives_one_line_naming_problem_and_fix(
    what: str, obj: Any, problem: str, fix: str
) -> None:
    with pytest.raises(QueryError) as info:
        parse_seed_query(obj)
    message = str(info.value)
    assert "\n" not in message
    assert problem in message, message
    assert fix in message, message


INVALID_REST: list[tuple[str, Any, str, str]] = [
    ("not a table", [], "must be a table", '"and"'),
    ("empty", {"and": []}, "no conditions", "at least one"),
    ("unknown list", {"nand": []}, "'nand'", "allowed keys"),
    (
        "unknown field",
        {"and": [rest("hashtag_names", "IN", "x")]},
        "'hashtag_names'",
        "hashtag_name",
    ),
    ("LIKE op", {"and": [rest("keyword", "LIKE", "x")]}, "'LIKE'", "EQ, IN"),
    ("GT on username", {"and": [rest("username", "GT", "x")]}, "username", "EQ, IN"),
    ("bad date", {"and": [rest("create_date", "GTE", "2023-01-01")]}, "not a date", "YYYYMMDD"),
    ("bad length", {"and": [rest("video_length", "EQ", "HUGE")]}, "'HUGE'", "EXTRA_LONG"),
    ("non-int id", {"and": [rest("video_id", "EQ", "x1")]}, "not an integer", "int64"),
]


@pytest.mark.parametrize(
    ("what", "obj", "problem", "fix"), INVALID_REST, ids=[c[0] for c in INVALID_REST]
)
def test_invalid_rest_query_gives_one_line(what: str, obj: Any, problem: str, fix: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_rest_query(obj)
    message = str(info.value)
    assert "\n" not in message
    assert problem in message and fix in message, message


@pytest.mark.parametrize(
    ("fields", "source", "problem"),
    [
        ("id,bogus", "rqs", "unknown field 'bogus'"),
        ("id,duration_type", "research-api", "cannot be returned by source 'research-api'"),
        ("", "rqs", "fields is empty"),
        (["id", "stem_verified"], "research-api", "use source = 'rqs'"),
    ],
)
def test_invalid_fields(fields: Any, source: Any, problem: str) -> None:
    with pytest.raises(QueryError, match=problem):
        validate_fields(fields, source)


def test_fields_keep_order_and_drop_repeats() -> None:
    assert validate_fields(" id, username ,id,", "rqs") == ("id", "username")
    sample = "username,like_count,hashtag_info_list,sticker_info_list,video_sticker_id,"
    sample += "video_mention_list,video_label"
    assert len(validate_fields(sample, "rqs")) == 7


@pytest.mark.parametrize(
    ("limit", "stage", "expected"),
    [
        (None, "test", 100),
        (None, "execution", 1000),
        (5000, "test", 5000),
        (100_000, "execution", 100_000),
    ],
)
def test_limit_defaults_and_maxima(limit: int | None, stage: Any, expected: int) -> None:
    assert validate_limit(limit, stage) == expected


@pytest.mark.parametrize(
    ("limit", "stage", "problem"),
    [
        (5001, "test", "1 to 5,000"),
        (100_001, "execution", "1 to 100,000"),
        (0, "test", "out of"),
        (10, "prod", "unknown"),
        ("10", "test", "whole number"),
    ],
)
def test_limit_out_of_range(limit: Any, stage: Any, problem: str) -> None:
    with pytest.raises(QueryError, match=problem):
        validate_limit(limit, stage)


VIDEO = {
    "id": 7201234567890123456,
    "create_time": 1_672_617_600,  # 2023-01-02 00:00:00 UTC
    "username": "alice",
    "region_code": "NL",
    "video_description": "Vote! #election 100% real",
    "hashtag_names": ["Election", "news"],
    "effect_ids": ["42"],
    "like_count": 3_000_000_000,
    "view_count": 10,
    "video_duration": 30,
}


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        ([group("and", cond("region_code", "eq", "NL"))], True),
        ([group("and", cond("region_code", "IN", "DE", "FR"))], False),
        ([group("and", cond("hashtag_names", "contains", "election"))], True),
        ([group("and", cond("video_description", "like", "%ELECTION%"))], True),
        ([group("and", cond("video_description", "LIKE", "vote!%"))], True),
        ([group("and", cond("video_description", "LIKE", "%100\\%%"))], True),
        ([group("and", cond("video_description", "LIKE", "%200\\%%"))], False),
        ([group("and", cond("like_count", "GT", str(2**31)))], True),
        ([group("or", cond("username", "EQ", "bob"), cond("view_count", "LTE", "10"))], True),
        ([group("not", cond("username", "EQ", "alice"))], False),
        (
            [
                group(
                    "and",
                    cond("create_time", "GTE", "1672617600"),
                    cond("create_time", "LT", "1672617601"),
                )
            ],
            True,
        ),
        ([group("and", cond("share_count", "GT", "0"))], False),  # missing field never matches
        ([], True),
    ],
)
def test_seed_matches(groups: Any, expected: bool) -> None:
    assert parse_seed_query(groups).matches(VIDEO) is expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"and": [rest("create_date", "EQ", "20230102")]}, True),
        ({"and": [rest("create_date", "GT", "20230102")]}, False),
        ({"and": [rest("hashtag_name", "IN", "election")]}, True),
        ({"and": [rest("keyword", "EQ", "vote")]}, True),
        ({"and": [rest("video_length", "EQ", "MID")]}, True),
        ({"and": [rest("video_id", "EQ", "7201234567890123456")]}, True),
        ({"or": [rest("region_code", "EQ", "DE"), rest("username", "EQ", "alice")]}, True),
        ({"or": [rest("region_code", "EQ", "DE")]}, False),
        ({"not": [rest("effect_id", "IN", "42")]}, False),
    ],
)
def test_rest_matches(query: Any, expected: bool) -> None:
    assert parse_rest_query(query).matches(VIDEO) is expected


def test_translation_pushes_down_and_post_filters_the_rest() -> None:
    seed = parse_seed_query(
        [
            group(
                "and",
                cond("region_code", "EQ", "NL"),
                cond("hashtag_names", "CONTAINS", "election"),
                cond("like_count", "GTE", "1000"),
            ),
            group(
                "not",
                cond("username", "IN", "spam1", "spam2"),
                cond("video_description", "LIKE", "%ad%"),
            ),
        ]
    )
    t = translate_to_rest(seed)
    remote = t.rest.to_json()
    assert {"operation": "EQ", "field_name": "region_code", "field_values": ["NL"]} in remote["and"]
    assert {"operation": "IN", "field_name": "hashtag_name", "field_values": ["election"]} in (
        remote["and"]
    )
    # Both NOTs are on approximately matched fields: sent, they could exclude true matches.
    assert "not" not in remote
    assert {"username", "region_code", "hashtag_names", "like_count", "video_description"} <= set(
        t.extra_fields
    )
    assert len(t.warnings) == 3 and all("quota" in w for w in t.warnings)
    assert sum("like_count" in w for w in t.warnings) == 1
    assert sum(w.startswith("not condition username") for w in t.warnings) == 1
    assert sum(w.startswith("not condition video_description") for w in t.warnings) == 1
    # The post-filter is the seed query itself: exact on whatever the API returns.
    assert t.post_filter == seed
    fuzzy_false_positive = {**VIDEO, "hashtag_names": ["elections2024"], "like_count": 5000}
    assert not t.post_filter.matches(fuzzy_false_positive)
    assert t.post_filter.matches({**VIDEO, "like_count": 5000})
    assert not t.full_scan


def test_translation_sends_a_not_only_on_exact_fields() -> None:
    seed = parse_seed_query(
        [
            group("and", cond("region_code", "EQ", "NL")),
            group("not", cond("id", "EQ", "7"), cond("view_count", "GT", "10")),
        ]
    )
    t = translate_to_rest(seed)
    assert [c.field_name for c in t.rest.not_] == ["video_id", "view_count"]
    assert t.warnings == ()


def test_rest_form_keeps_a_not_on_an_approximate_field_local() -> None:
    query = parse_rest_query(
        {
            "and": [rest("hashtag_name", "EQ", "election")],
            "not": [rest("username", "IN", "spam1"), rest("video_length", "EQ", "SHORT")],
        }
    )
    t = translate_rest(query)
    assert t.rest.and_ == query.and_
    assert [c.field_name for c in t.rest.not_] == ["video_length"]
    assert t.post_filter == query
    assert set(t.extra_fields) == {"hashtag_names", "username", "video_duration"}
    assert len(t.warnings) == 1 and t.warnings[0].startswith("not condition username")
    assert not t.full_scan


@pytest.mark.parametrize(
    ("query", "full"),
    [
        ({"not": [rest("username", "EQ", "spam")]}, True),
        ({"not": [rest("video_length", "EQ", "SHORT")]}, True),
        ({"and": [rest("create_date", "GTE", "20230101")]}, True),
        ({"and": [rest("region_code", "EQ", "NL")], "not": [rest("username", "EQ", "x")]}, False),
        ({"or": [rest("view_count", "GT", "1000")]}, False),
    ],
)
def test_full_scan_is_nothing_positive_sent(query: dict[str, Any], full: bool) -> None:
    assert translate_rest(parse_rest_query(query)).full_scan is full


def test_a_seed_query_with_only_local_or_negative_conditions_is_a_full_scan() -> None:
    for groups in (
        [group("not", cond("username", "EQ", "spam"))],
        [group("and", cond("like_count", "GT", "100"))],
        [group("and", cond("create_time", "GTE", "1672531200"))],
        [],
    ):
        assert translate_to_rest(parse_seed_query(groups)).full_scan, groups
    keep = [group("and", cond("hashtag_names", "CONTAINS", "vote"))]
    assert not translate_to_rest(parse_seed_query(keep)).full_scan


def test_translation_of_or_group_is_whole_or_local() -> None:
    seed = parse_seed_query(
        [group("or", cond("region_code", "EQ", "NL"), cond("share_count", "GT", "5"))]
    )
    t = translate_to_rest(seed)
    assert t.rest.is_empty()  # pushing only region_code would lose the share_count matches
    assert t.post_filter == seed
    assert t.rest.for_dates("20230101", "20230130").to_json()["and"][0]["field_name"] == (
        "create_date"
    )


def test_translation_refuses_a_field_the_api_cannot_return() -> None:
    seed = parse_seed_query([group("and", cond("duration_type", "EQ", "1"))])
    with pytest.raises(QueryError, match='use source = "rqs"'):
        translate_to_rest(seed)


def test_time_bounds_and_windows() -> None:
    seed = parse_seed_query(
        [group("and", cond("create_time", "GT", "100"), cond("create_time", "LTE", "200"))]
    )
    assert seed.time_bounds() == (101, 201)
    assert seed.with_window(150, 300).time_bounds() == (150, 201)


@given(st.text())
def test_clean_string_removes_every_control_but_tab_and_newline(s: str) -> None:
    out = clean_string(s)
    assert all(ch in "\t\n" or (ord(ch) >= 0x20 and ord(ch) != 0x7F) for ch in out)
    assert out == "".join(ch for ch in s if ch in "\t\n" or (ord(ch) >= 0x20 and ord(ch) != 0x7F))


@given(
    st.lists(
        st.sampled_from(
            [
                "id",
                "username",
                "like_count",
                "create_time",
                "view_count",
                "region_code",
                "hashtag_names",
                "video_description",
            ]
        ),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from(["and", "or", "not"]),
)
def test_translation_never_loses_a_match(fields: list[str], op: str) -> None:
    """Whatever the seed query, the REST query selects a superset and the post-filter is exact."""
    values = {
        "id": ("EQ", str(VIDEO["id"])),
        "username": ("IN", "alice"),
        "like_count": ("GT", "5"),
        "create_time": ("GTE", "0"),
        "view_count": ("LT", "99"),
        "region_code": ("EQ", "NL"),
        "hashtag_names": ("CONTAINS", "news"),
        "video_description": ("LIKE", "%vote%"),
    }
    seed = parse_seed_query([group(op, *(cond(f, *values[f]) for f in fields))])
    t = translate_to_rest(seed)
    for record in (VIDEO, {**VIDEO, "region_code": "DE", "like_count": 1, "username": "x"}):
        if seed.matches(record):
            assert t.rest.matches(record) and t.post_filter.matches(record)
        else:
            assert not (t.rest.matches(record) and t.post_filter.matches(record))


@given(
    st.lists(
        st.sampled_from(
            ["username", "region_code", "hashtag_names", "video_description", "effect_ids", "id"]
        ),
        min_size=1,
        max_size=3,
    ),
    st.sampled_from(["and", "or", "not"]),
    st.sampled_from(["alic", "alice", "Alice", "alce", "alicex", "bob"]),
)
def test_an_approximate_api_never_costs_a_match(fields: list[str], op: str, name: str) -> None:
    """Whatever the seed query, what the API returns for the sent query when it matches strings
    approximately (the simulator's model) holds every true match, and the post-filter restores
    the exact answer: a near-string `not` is never sent."""
    from harvester.simulator.fuzzy import approximate_predicate

    values = {
        "username": ("EQ", name),
        "region_code": ("IN", "NL", "BE"),
        "hashtag_names": ("CONTAINS", "news"),
        "video_description": ("LIKE", "%vote%"),
        "effect_ids": ("CONTAINS", "1234"),
        "id": ("EQ", str(VIDEO["id"])),
    }
    seed = parse_seed_query([group(op, *(cond(f, *values[f]) for f in fields))])
    t = translate_to_rest(seed)
    api = approximate_predicate(t.rest)
    records = [
        VIDEO,
        {**VIDEO, "username": "alice"},
        {**VIDEO, "username": "Alice", "region_code": "nl"},
        {**VIDEO, "username": "alicex", "hashtag_names": ["newsroom"]},
        {**VIDEO, "effect_ids": ["12345"], "video_description": "a voter guide"},
    ]
    for record in records:
        if seed.matches(record):
            assert api(record) and t.post_filter.matches(record)
        else:
            assert not (api(record) and t.post_filter.matches(record))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("UK", "did you mean 'GB'?"),
        ("CA", "Canada is outside the Research API's scope"),
        ("nl", "did you mean 'NL'?"),
        ("ZZ", 'like "NL", "GB" or "US"'),
    ],
)
def test_region_codes_come_from_the_codebook(value: str, message: str) -> None:
    seed = parse_seed_query([group("and", cond("region_code", "IN", "NL", value))])
    with pytest.raises(QueryError, match=r"condition_groups\[0\]\.conditions\[0\]: region code"):
        check_region_codes(seed)
    with pytest.raises(QueryError) as info:
        check_region_codes(parse_rest_query({"not": [rest("region_code", "EQ", value)]}))
    assert str(info.value).startswith(f"query.not[0]: region code {value!r}")
    assert message in str(info.value) and "\n" not in str(info.value)
    for ok in ("GB", "NL", "XK", "US"):
        check_region_codes(parse_seed_query([group("and", cond("region_code", "EQ", ok))]))
    assert "CA" in REGION_CODES and "UK" not in REGION_CODES and len(REGION_CODES) > 200
