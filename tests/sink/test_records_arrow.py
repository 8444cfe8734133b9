"""normalise_rows (a page decoded into Arrow) gives exactly what normalise_page gives for the
same records: the same rows kept, the same counts, the same derived partitions and `_extra`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harvester.api._pages import record_type
from harvester.fields import DEFAULT_FIELDS
from harvester.sink import Layout, PageResult, layout, normalise_page, normalise_rows
from harvester.sink.records import _utc_dates

from ._data import DAY, FULL, JAN1, NOW, video

LEAF = "20230101T000000-20230102T000000"
WINDOW = (JAN1, JAN1 + DAY)
ROWS_TYPE = record_type(DEFAULT_FIELDS)
DATES = layout(DEFAULT_FIELDS, ("create_date", "create_month", "create_year"))
REGION = layout(DEFAULT_FIELDS, ("create_date", "region_code"))


def to_rows(records: Sequence[Any], t: pa.StructType = ROWS_TYPE) -> pa.StructArray:
    """The rows a PageDecoder would give for `records` (None: a null item)."""
    arr = pa.array(list(records), type=t)
    assert isinstance(arr, pa.StructArray)
    return arr


def both(
    records: Sequence[Any],
    lay: Layout = FULL,
    window: tuple[int, int] = WINDOW,
    t: pa.StructType = ROWS_TYPE,
) -> tuple[PageResult, PageResult]:
    kw: dict[str, Any] = {
        "leaf_key": LEAF,
        "window": window,
        "source": "rqs",
        "retrieved_at": NOW,
    }
    return normalise_rows(to_rows(records, t), lay, **kw), normalise_page(list(records), lay, **kw)


def assert_same(records: Sequence[Any], **kw: Any) -> PageResult:
    a, b = both(records, **kw)
    assert a.batch.schema.equals(b.batch.schema)
    for name in a.batch.schema.names:
        assert a.batch.column(name).equals(b.batch.column(name)), (
            name,
            a.batch.column(name).to_pylist()
            if name != "_retrieved_at"
            else a.batch.column(name).cast(pa.int64()).to_pylist(),
            b.batch.column(name).to_pylist()
            if name != "_retrieved_at"
            else b.batch.column(name).cast(pa.int64()).to_pylist(),
        )
    assert a.batch.equals(b.batch)
    assert (a.received, a.invalid, a.outside) == (b.received, b.invalid, b.outside)
    # The records are well typed: the general path coerced nothing, and what both count as
    # "uncoerced" is only the partition values kept in `_extra`.
    assert not b.unknown_fields
    assert b.uncoerced == len(b.batch) - b.batch.column("_extra").null_count
    assert a.uncoerced == b.uncoerced
    return a


def ids(result: PageResult) -> list[int]:
    return [int(i) for i in result.batch.column("id").to_pylist()]


def test_window_inside_outside_and_both_boundaries() -> None:
    start, end = WINDOW
    times = [start - DAY, start - 1, start, start + 1, end - 1, end, end + 1, end + DAY]
    recs = [video(i, t) for i, t in enumerate(times)]
    r = assert_same(recs)
    assert [t for t in r.batch.column("create_time").to_pylist()] == [start, start + 1, end - 1]
    assert (r.row_count, r.outside, r.invalid) == (3, 5, 0)


def test_all_outside_and_all_inside() -> None:
    start, end = WINDOW
    r = assert_same([video(i, end + i) for i in range(5)])
    assert r.row_count == 0 and r.outside == 5
    r = assert_same([video(i, start + i) for i in range(5)])
    assert r.row_count == 5 and r.outside == 0


def test_negative_and_extreme_windows() -> None:
    recs = [video(i, t) for i, t in enumerate([-DAY - 1, -DAY, -1, 0, 1, DAY])]
    r = assert_same(recs, window=(-DAY, 1), lay=DATES)
    assert r.batch.column("create_date").to_pylist() == ["1969-12-31", "1969-12-31", "1970-01-01"]
    assert_same(recs, window=(-(1 << 40), 1 << 40), lay=DATES)


def test_null_items_are_invalid() -> None:
    recs = [None, video(1, JAN1), None, None, video(2, JAN1 + 5), None]
    r = assert_same(recs)
    assert (r.received, r.invalid, r.row_count) == (6, 4, 2)
    r = assert_same([None, None])
    assert (r.received, r.invalid, r.row_count) == (2, 2, 0)
    assert_same([])


def test_missing_id_or_create_time_is_invalid() -> None:
    recs = [
        video(1, JAN1, id=None),
        video(2, JAN1, create_time=None),
        {k: v for k, v in video(3, JAN1).items() if k != "id"},
        {k: v for k, v in video(4, JAN1).items() if k != "create_time"},
        {"id": video(5, JAN1)["id"], "create_time": JAN1},
        video(6, JAN1),
    ]
    r = assert_same(recs)
    assert r.invalid == 4 and r.row_count == 2


def test_repeats_are_the_api_layer_s_both_paths_keep_what_they_are_handed() -> None:
    a, b = video(1, JAN1), video(2, JAN1 + 1)
    recs = [a, b, {**a, "username": "second"}, None, {**b, "create_time": JAN1 - 1}]
    r = assert_same(recs)
    assert ids(r) == [a["id"], b["id"], a["id"]] and r.outside == 1 and r.invalid == 1


def test_derived_partitions_of_every_kind() -> None:
    times = [JAN1 - 1, JAN1, JAN1 + DAY - 1, JAN1 + 40 * DAY, JAN1 + 400 * DAY]
    recs = [video(i, t) for i, t in enumerate(times)]
    r = assert_same(recs, lay=DATES, window=(0, 1 << 40))
    assert r.batch.column("create_date").to_pylist() == [
        "2022-12-31",
        "2023-01-01",
        "2023-01-01",
        "2023-02-10",
        "2024-02-05",
    ]
    assert r.batch.column("create_month").to_pylist() == [
        "2022-12",
        "2023-01",
        "2023-01",
        "2023-02",
        "2024-02",
    ]
    assert r.batch.column("create_year").to_pylist() == ["2022", "2023", "2023", "2023", "2024"]


@pytest.mark.parametrize(
    "region",
    [
        "",
        "x" * 65,
        "é" * 30,
        "a/b" * 30,
        "..",
        "__HIVE_DEFAULT_PARTITION__",
        "US",
        None,
    ],
    ids=["empty", "long", "long-unicode", "long-slashes", "dots", "hive-null", "plain", "null"],
)
def test_region_partition_values_the_path_cannot_carry_go_to_extra_alike(
    region: str | None,
) -> None:
    recs = [video(1, JAN1, region_code=region), video(2, JAN1 + 1, region_code="GB")]
    r = assert_same(recs, lay=REGION)
    extra = r.batch.column("_extra").to_pylist()
    assert extra[1] is None
    if region in ("", "x" * 65, "é" * 30, "a/b" * 30):
        assert extra[0] is not None and f'"region_code":"{region}"' in extra[0]
    else:
        assert extra[0] is None


def test_fields_the_layout_does_not_keep_are_left_out() -> None:
    """Rows fetched with more fields than the layout keeps equal the general path's records
    with those fields stripped (what the orchestrator does before normalise_page)."""
    kept = ("id", "create_time", "username")
    lay = layout(kept)
    recs = [video(i, JAN1 + i) for i in range(4)]
    a = normalise_rows(
        to_rows(recs), lay, leaf_key=LEAF, window=WINDOW, source="rqs", retrieved_at=NOW
    )
    b = normalise_page(
        [{k: v for k, v in r.items() if k in kept} for r in recs],
        lay,
        leaf_key=LEAF,
        window=WINDOW,
        source="rqs",
        retrieved_at=NOW,
    )
    assert a.batch.equals(b.batch)
    assert a.batch.column("_extra").null_count == 4


def test_layout_fields_the_rows_lack_are_null() -> None:
    t = record_type(("id", "create_time", "username"))
    recs = [{"id": 1, "create_time": JAN1, "username": "u"}]
    result = assert_same(recs, t=t)
    lacking = [n for n in FULL.fields if n not in ("id", "create_time", "username")]
    assert lacking  # the layout asks for more than the rows carry
    for name in lacking:
        assert result.batch.column(name).to_pylist() == [None], name
    assert result.batch.column("username").to_pylist() == ["u"]


def test_rows_without_id_or_create_time_or_of_another_type_are_refused() -> None:
    kw: dict[str, Any] = {"leaf_key": LEAF, "window": WINDOW, "source": "rqs", "retrieved_at": NOW}
    no_time = to_rows([{"id": 1}], record_type(("id", "username")))
    with pytest.raises(ValueError, match="id and create_time"):
        normalise_rows(no_time, FULL, **kw)
    odd = pa.array([{"id": 1, "create_time": JAN1, "username": 5}])
    assert isinstance(odd, pa.StructArray)
    with pytest.raises(TypeError, match="username"):
        normalise_rows(odd, FULL, **kw)
    with pytest.raises(ValueError, match="source"):
        normalise_rows(to_rows([video(1, JAN1)]), FULL, **{**kw, "source": "nope"})


# --------------------------------------------------------------------------- properties

EPOCH_SECONDS = st.one_of(
    st.integers(-(10**11), 10**11),
    st.builds(
        lambda d, s: d * DAY + s,
        st.integers(-(10**6), 10**6),
        st.sampled_from([-DAY, -DAY + 1, -1, 0, 1, DAY - 1, DAY]),
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(EPOCH_SECONDS | st.none(), max_size=50))
def test_utc_dates_agree_with_strftime(times: list[int | None]) -> None:
    arr = pa.array(times, type=pa.int64())
    got = _utc_dates(arr)
    want = pc.strftime(pc.cast(arr, pa.timestamp("s")), format="%Y-%m-%d")
    assert got.to_pylist() == want.to_pylist()


@st.composite
def pages(draw: st.DrawFn) -> tuple[list[Any], frozenset[int], tuple[int, int]]:
    start = draw(st.integers(-3 * DAY, 3 * DAY))
    end = start + draw(st.integers(0, 3 * DAY))
    pool = draw(st.lists(st.integers(0, 30), min_size=1, max_size=8))
    n = draw(st.integers(0, 25))
    out: list[Any] = []
    for _ in range(n):
        if draw(st.integers(0, 12)) == 0:
            out.append(None)
            continue
        i = draw(st.sampled_from(pool))
        t = draw(
            st.sampled_from([start - 1, start, end - 1, end]) | st.integers(start - DAY, end + DAY)
        )
        rec = video(i, t)
        if draw(st.integers(0, 15)) == 0:
            rec["id"] = None
        if draw(st.integers(0, 15)) == 0:
            del rec["create_time"]
        rec["region_code"] = draw(
            st.sampled_from(["US", "", "x" * 70, None, "GB", "é" * 25, "a b"])
        )
        # Rows arrive clean (the decoder cleans them): no control characters here.
        clean_text = st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=5)
        rec["username"] = draw(st.none() | clean_text)
        out.append(rec)
    seen = frozenset(video(i, 0)["id"] for i in draw(st.sets(st.integers(0, 30), max_size=5)))
    return out, seen, (start, end)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pages(), st.sampled_from([FULL, DATES, REGION]))
def test_any_page_normalises_the_same_either_way(
    page: tuple[list[Any], frozenset[int], tuple[int, int]], lay: Layout
) -> None:
    records, _, window = page
    assert_same(records, lay=lay, window=window)
