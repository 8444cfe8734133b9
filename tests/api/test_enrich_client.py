"""EnrichClient: each endpoint's paging and quirks, staged on the scripted API over loopback, and
against the simulator for the 1,000-comment ceiling."""

from __future__ import annotations

from typing import Any

import pytest

from harvester._exceptions import InvalidRequest, TransientError
from harvester.api import EnrichClient, TargetPage, TargetUnavailable
from harvester.kinds import COMMENT_CEILING, KINDS
from tests.api.conftest import RecordingHooks, SessionFactory, sim_session
from tests.api.fakeapi import FakeApi, err, ok

pytestmark = pytest.mark.anyio


async def pages(client: EnrichClient, target: Any, **kw: Any) -> list[TargetPage]:
    return [p async for p in client.pages(target, **kw)]


async def test_list_keys_that_differ_between_pages_are_all_read(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    kind = KINDS["reposted_videos"]
    fake.script(
        kind.endpoint,
        ok({"user_reposted_videos": [{"id": 1}, {"id": 2}], "cursor": 2, "has_more": True}),
        ok({"reposted_videos": [{"id": 3, "favourites_count": 4}], "cursor": 3, "has_more": False}),
    )
    got = await pages(EnrichClient(make_session(), kind, max_count=2), "someone")
    assert [[r["id"] for r in p.records] for p in got] == [[1, 2], [3]]
    # One reference page spells the field the British way: it lands in the catalogue's column.
    assert got[1].records[0]["favorites_count"] == 4
    bodies = fake.calls(kind.endpoint)
    assert bodies == [
        {"username": "someone", "max_count": 2},
        {"username": "someone", "max_count": 2, "cursor": 2},
    ]
    path, _, _ = fake.requests[-1]
    assert path == kind.endpoint
    pinned = KINDS["pinned_videos"]
    fake.script(pinned.endpoint, ok({"user_pinned_videos": [{"id": 9}]}))
    (page,) = await pages(EnrichClient(make_session(), pinned), "someone")
    assert [r["id"] for r in page.records] == [9] and page.cursor is None
    assert fake.calls(pinned.endpoint) == [{"username": "someone"}]


async def test_empty_pages_with_has_more_are_followed_and_repeats_dropped(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    kind = KINDS["followers"]
    follower = [{"username": f"f{i}", "display_name": f"F{i}"} for i in range(4)]
    fake.script(
        kind.endpoint,
        ok({"user_followers": follower[:2], "cursor": 1_700_000_000, "has_more": True}),
        ok({"user_followers": [], "cursor": 1_600_000_000, "has_more": True}),
        ok({"user_followers": follower[1:], "has_more": False}),  # a repeat, and no cursor
    )
    got = await pages(EnrichClient(make_session(), kind), "someone")
    assert [len(p.records) for p in got] == [2, 0, 2]
    assert [c.get("cursor") for c in fake.calls(kind.endpoint)] == [
        None,
        1_700_000_000,
        1_600_000_000,
    ]
    assert got[-1].has_more is False


async def test_endless_empty_pages_are_a_stall(fake: FakeApi, make_session: SessionFactory) -> None:
    kind = KINDS["following"]
    fake.script(kind.endpoint, *[ok({"user_following": [], "cursor": 5, "has_more": True})] * 10)
    client = EnrichClient(make_session(), kind, max_empty_pages=4)
    with pytest.raises(TransientError) as caught:
        await pages(client, "someone", cursor=5)
    assert caught.value.kind == "stalled"
    assert fake.count(kind.endpoint) == 4


@pytest.mark.parametrize(
    ("message", "verdict"),
    [
        ("The user x has a private account", "private"),
        ("The user x is under 18; their data is not available", "under_18"),
        ("The user x does not exist or has been deleted", "deleted"),
    ],
)
async def test_a_refused_target_is_its_verdict(
    fake: FakeApi, make_session: SessionFactory, hooks: RecordingHooks, message: str, verdict: str
) -> None:
    kind = KINDS["users"]
    fake.script(kind.endpoint, err(400, "invalid_params", message))
    with pytest.raises(TargetUnavailable) as caught:
        await pages(EnrichClient(make_session(), kind), "x")
    assert caught.value.kind == verdict
    assert hooks.reserved == [kind.endpoint]  # the refusal was paid for, once


async def test_a_bad_request_is_not_taken_for_a_verdict(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    kind = KINDS["comments"]
    fake.script(kind.endpoint, err(400, "invalid_params", "Invalid fields: text2"))
    with pytest.raises(InvalidRequest) as caught:
        await pages(EnrichClient(make_session(), kind), 123)
    assert not isinstance(caught.value, TargetUnavailable)


async def test_playlist_positions_count_back_from_the_cursor(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    kind = KINDS["playlists"]
    meta = {"playlist_name": "p", "playlist_item_total": 4, "playlist_last_updated": 7}
    fake.script(
        kind.endpoint,
        ok({**meta, "playlist_video_ids": [10, 11], "cursor": 2, "has_more": True}),
        # The previous page's last id again at the front: it keeps its position.
        ok({**meta, "playlist_video_ids": [11, 12, 13], "cursor": 4, "has_more": False}),
    )
    got = await pages(EnrichClient(make_session(), kind, max_count=2), 77)
    rows = [r for p in got for r in p.records]
    assert [(r["video_id"], r["position"]) for r in rows] == [(10, 0), (11, 1), (12, 2), (13, 3)]
    assert rows[0]["playlist_name"] == "p"
    assert fake.calls(kind.endpoint)[0] == {"playlist_id": 77, "max_count": 2}


async def test_the_comment_list_stops_at_its_ceiling() -> None:
    """A video with more comments than the API serves: exactly the top 1,000, and no request
    beyond them (the API would answer nothing and still count the call)."""
    async with sim_session(videos_per_day=120) as (sim, session):
        video = next(
            v
            for d in range(sim.corpus.first_day, sim.corpus.first_day + 30)
            for v in sim.corpus.day(d).videos
            if v["comment_count"] > 3 * COMMENT_CEILING
        )
        client = EnrichClient(session, KINDS["comments"])
        rows = [r for p in await pages(client, video["id"]) for r in p.records]
        assert len(rows) == COMMENT_CEILING == len({r["id"] for r in rows})
        assert sim.stats.requests_to("rest.comments") == COMMENT_CEILING // 100
        expected = sim.enrich.expected("comments", video["id"])
        assert isinstance(expected, list)
        assert [r["id"] for r in rows] == [r["id"] for r in expected]
        # Replies of a comment, by its id: each points at it.
        parent = next(r for r in rows if r["reply_count"])
        replies = await pages(client, None, comment_id=parent["id"])
        got = [r for p in replies for r in p.records]
        assert len(got) == min(parent["reply_count"], COMMENT_CEILING)
        assert {r["parent_comment_id"] for r in got} == {parent["id"]}
        assert all(r["create_time"] >= parent["create_time"] for r in got)
