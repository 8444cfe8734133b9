"""ResearchApiClient paging quirks, staged precisely on the scripted API."""

from __future__ import annotations

from datetime import date
from typing import Any, cast

import pytest
import structlog

from harvester._exceptions import QueryError, SearchIdInvalid, TransientError
from harvester.api import ApiSession, Page, ResearchApiClient
from harvester.query import RestQuery, parse_rest_query
from tests.api.conftest import RecordingHooks, SessionFactory
from tests.api.fakeapi import FakeApi, err, ok

pytestmark = pytest.mark.anyio
EP = "/v2/research/video/query/"
QUERY = parse_rest_query(
    {"and": [{"operation": "EQ", "field_name": "region_code", "field_values": ["NL"]}]}
)
DAY = date(2023, 1, 1)
FIELDS = ("id", "username", "create_time")


def vids(*ids: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"id": i, "username": f"u{i}", "create_time": 1672531200 + i, **extra} for i in ids]


def page(ids: list[dict[str, Any]], cursor: int | None, more: bool, sid: str = "S1") -> Any:
    data: dict[str, Any] = {"videos": ids, "has_more": more, "search_id": sid}
    if cursor is not None:
        data["cursor"] = cursor
    return ok(data)


async def pages_of(client: ResearchApiClient, **kw: Any) -> list[Page]:
    return [p async for p in client.iter_pages(QUERY, DAY, DAY, FIELDS, **kw)]


async def test_request_shape(fake: FakeApi, make_session: SessionFactory) -> None:
    fake.script(EP, page(vids(1), 10, False))
    client = ResearchApiClient(make_session(), max_count=10)
    await pages_of(client)
    (body,) = fake.calls(EP)
    assert body == {
        "query": QUERY.to_json(),
        "start_date": "20230101",
        "end_date": "20230101",
        "max_count": 10,
        "cursor": 0,
    }
    path, _, _ = fake.requests[-1]
    assert path == EP


async def test_short_and_empty_pages_keep_going(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    fake.script(
        EP,
        page(vids(1, 2), 10, True),
        page([], 20, True),
        page(vids(3), 30, True),
        page(vids(4), 40, False),
    )
    pages = await pages_of(ResearchApiClient(make_session(), max_count=10))
    assert [[r["id"] for r in p.records] for p in pages] == [[1, 2], [], [3], [4]]
    assert [c["cursor"] for c in fake.calls(EP)] == [0, 10, 20, 30]
    assert [c.get("search_id") for c in fake.calls(EP)] == [None, "S1", "S1", "S1"]
    assert pages[-1].has_more is False


async def test_missing_or_null_cursor_advances_by_max_count(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    fake.script(
        EP,
        page(vids(*range(10)), None, True),
        ok({"videos": vids(*range(10, 20)), "cursor": None, "has_more": True}),
        page(vids(20), 30, False),
    )
    pages = await pages_of(ResearchApiClient(make_session(), max_count=10))
    assert [c["cursor"] for c in fake.calls(EP)] == [0, 10, 20]
    assert [p.cursor for p in pages] == [10, 20, 30]
    # A page without search_id keeps the one already known.
    assert pages[1].search_id == "S1"


async def test_duplicates_across_pages_are_dropped(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    fake.script(EP, page(vids(1, 2, 3), 3, True), page(vids(3, 4, 4, 5), 6, False))
    pages = await pages_of(ResearchApiClient(make_session(), max_count=3))
    assert [r["id"] for p in pages for r in p.records] == [1, 2, 3, 4, 5]
    assert [p.raw_count for p in pages] == [3, 4]


async def test_resume_skips_ids_already_stored(fake: FakeApi, make_session: SessionFactory) -> None:
    fake.script(EP, page(vids(3, 4), 20, False))
    pages = await pages_of(
        ResearchApiClient(make_session(), max_count=10),
        cursor=10,
        search_id="S9",
        seen_ids=[3],
    )
    assert [r["id"] for r in pages[0].records] == [4]
    assert fake.calls(EP)[0]["cursor"] == 10
    assert fake.calls(EP)[0]["search_id"] == "S9"


async def test_control_characters_are_cleaned_everywhere(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    dirty = {
        "id": 1,
        "username": "na\x00me\x1b",
        "video_description": "line1\nline2\ttab\x07",
        "hashtag_names": ["a\x00b", "ok"],
        "hashtag_info_list": [{"hashtag_name": "x\x01y", "hashtag_id": 5}],
        "video_label": {"content": "c\x00"},
    }
    fake.script(EP, page([dirty], 10, False))
    (p,) = await pages_of(ResearchApiClient(make_session(), max_count=10))
    assert p.records == [
        {
            "id": 1,
            "username": "name",
            "video_description": "line1\nline2\ttab",
            "hashtag_names": ["ab", "ok"],
            "hashtag_info_list": [{"hashtag_name": "xy", "hashtag_id": 5}],
            "video_label": {"content": "c"},
        }
    ]


async def test_invalid_search_id_is_retried_then_the_window_restarts(
    fake: FakeApi, make_session: SessionFactory, hooks: RecordingHooks
) -> None:
    bad = err(400, "invalid_params", "Search Id 42 is invalid or expired")
    fake.script(
        EP,
        page(vids(1, 2), 2, True),
        bad,
        bad,
        bad,
        page(vids(1, 2), 2, True, sid="S2"),
        page(vids(3), 4, False, sid="S2"),
    )
    # Waits of 1 ms then 2 ms spend the 3 ms budget: two retries, then the restart.
    client = ResearchApiClient(
        make_session(), max_count=2, search_id_wait=0.001, search_id_budget=0.003
    )
    with structlog.testing.capture_logs() as logs:
        pages = await pages_of(client)
    calls = fake.calls(EP)
    assert [(c["cursor"], c.get("search_id")) for c in calls] == [
        (0, None),
        (2, "S1"),
        (2, "S1"),
        (2, "S1"),
        (0, None),
        (2, "S2"),
    ]
    assert [p.restarted for p in pages] == [False, True, False]
    # Ids delivered before the restart are not delivered again.
    assert [[r["id"] for r in p.records] for p in pages] == [[1, 2], [], [3]]
    assert [r[0] for r in hooks.retries] == ["search_id_invalid", "search_id_invalid"]
    assert [r[2] for r in hooks.retries] == [0.001, 0.002]
    assert any(e["event"] == "window_restarted" for e in logs)


def test_a_fresh_search_id_is_waited_for_about_a_minute() -> None:
    client = ResearchApiClient(cast(ApiSession, None))  # the defaults: 1 s doubling to 60 s
    waits = client.search_id_waits()
    assert waits == [1, 2, 4, 8, 16, 29] and sum(waits) == 60
    # An id resumed from a checkpoint may be a day old: one retry, then the restart.
    assert client.search_id_waits(resumed=True) == [1]
    assert ResearchApiClient(cast(ApiSession, None), search_id_budget=0).search_id_waits() == []


async def test_a_fresh_search_id_accepted_after_waits_needs_no_restart(
    fake: FakeApi, make_session: SessionFactory, hooks: RecordingHooks
) -> None:
    bad = err(400, "invalid_params", "Search Id 42 is invalid or expired")
    # Rejected four times in a row (as fresh ids are, for seconds), then accepted.
    fake.script(EP, page(vids(1, 2), 2, True), bad, bad, bad, bad, page(vids(3), 4, False))
    client = ResearchApiClient(make_session(), max_count=2, search_id_wait=0.001)
    pages = await pages_of(client)
    assert [c.get("search_id") for c in fake.calls(EP)] == [None, "S1", "S1", "S1", "S1", "S1"]
    assert not any(p.restarted for p in pages)
    assert [r["id"] for p in pages for r in p.records] == [1, 2, 3]


async def test_invalid_cursor_counts_as_a_rejected_search(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    fake.script(EP, page(vids(1), 1, True), err(400, "invalid_params", "Invalid count or cursor"))
    fake.defaults[EP] = page(vids(2), 2, False)
    pages = await pages_of(ResearchApiClient(make_session(), max_count=1, search_id_wait=0))
    assert [r["id"] for p in pages for r in p.records] == [1, 2]


async def test_restarts_are_bounded(fake: FakeApi, make_session: SessionFactory) -> None:
    fake.defaults[EP] = err(400, "invalid_params", "Search Id 1 is invalid or expired")
    client = ResearchApiClient(
        make_session(), search_id_wait=0.001, search_id_budget=0.003, max_restarts=1
    )
    with pytest.raises(SearchIdInvalid):
        await pages_of(client, search_id="S0", cursor=100)
    # The resumed id: 1 + 1 retry; after the one restart, the fresh one: 1 + 2 retries.
    assert fake.count(EP) == 5


async def test_a_silent_empty_answer_is_asked_again(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    fake.script(EP, page([], 0, False), page(vids(1), 10, False))
    pages = await pages_of(ResearchApiClient(make_session()))
    assert [r["id"] for p in pages for r in p.records] == [1]
    assert fake.count(EP) == 2


async def test_endless_empty_pages_are_a_stall(fake: FakeApi, make_session: SessionFactory) -> None:
    fake.defaults[EP] = ok({"videos": [], "has_more": True})
    client = ResearchApiClient(make_session(), max_empty_pages=3)
    with pytest.raises(TransientError) as info:
        await pages_of(client)
    assert info.value.kind == "stalled"
    assert fake.count(EP) == 3


async def test_every_attempt_is_counted(
    fake: FakeApi, make_session: SessionFactory, hooks: RecordingHooks
) -> None:
    fake.script(EP, err(500, "internal_error"), page(vids(1, 2), 10, False))
    await pages_of(ResearchApiClient(make_session()))
    assert hooks.settled == [(EP, False, 0), (EP, True, 2)]


async def test_windows_longer_than_the_api_allows_are_refused(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    client = ResearchApiClient(make_session())
    with pytest.raises(QueryError, match="30 days"):
        [p async for p in client.iter_pages(QUERY, DAY, date(2023, 2, 15), FIELDS)]
    with pytest.raises(QueryError, match="before"):
        [p async for p in client.iter_pages(QUERY, DAY, date(2022, 12, 1), FIELDS)]
    assert fake.requests == []


async def test_exclusive_end_date_sends_the_day_after_and_drops_it(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    late = {"id": 9, "create_time": 1672617600}  # 2023-01-02 00:00 UTC
    fake.script(EP, page([*vids(1), late], 10, False))
    client = ResearchApiClient(make_session(), end_date_inclusive=False)
    pages = await pages_of(client)
    assert fake.calls(EP)[0]["end_date"] == "20230102"
    assert [r["id"] for r in pages[0].records] == [1]


async def test_an_empty_query_is_given_the_window_as_a_condition(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    fake.script(EP, page(vids(1), 10, False))
    client = ResearchApiClient(make_session())
    await client.query(RestQuery(), DAY, DAY, FIELDS)
    assert fake.calls(EP)[0]["query"]["and"][0]["field_name"] == "create_date"


async def test_backend_view_maps_epochs_to_whole_days(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    from harvester.api import Resume

    fake.script(EP, page(vids(5), 30, False))
    client = ResearchApiClient(make_session())
    start = 1672531200  # 2023-01-01
    got = [
        p
        async for p in client.pages(
            QUERY, start, start + 3 * 86400, FIELDS, resume=Resume(cursor=20, search_id="S7")
        )
    ]
    body = fake.calls(EP)[0]
    assert (body["start_date"], body["end_date"], body["cursor"]) == ("20230101", "20230103", 20)
    assert got[0].resume == Resume(cursor=30, search_id="S1")
