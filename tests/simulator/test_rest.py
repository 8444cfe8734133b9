"""The public Research API: token, dates, paging, fields and every operation, over real HTTP."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from harvester.simulator.corpus import DAY

from ._client import QUERY_PATH, TOKEN_PATH, Client, connect, day_epoch

pytestmark = pytest.mark.anyio

NL = {"and": [{"operation": "EQ", "field_name": "region_code", "field_values": ["NL"]}]}
ANY = {"not": [{"operation": "EQ", "field_name": "region_code", "field_values": ["XX"]}]}
MAR1 = day_epoch(date(2023, 3, 1))


async def test_token_and_wrong_credentials() -> None:
    async with connect() as c:
        url = c.sim.base_url + TOKEN_PATH
        good = {"client_key": "sim-client-key", "client_secret": "sim-client-secret",
                "grant_type": "client_credentials"}  # fmt: skip
        async with c.session.post(url, data=good) as r:
            body = await r.json()
        assert r.status == 200 and body["token_type"] == "Bearer"
        assert body["access_token"].startswith("clt.") and body["expires_in"] == 7200
        async with c.session.post(url, data={**good, "client_secret": "nope"}) as r:
            bad = await r.json()
        assert r.status == 401 and bad["error"] == "invalid_client"
        assert {"error_description", "log_id"} <= set(bad)


async def test_missing_and_expired_tokens_answer_access_token_invalid() -> None:
    async with connect(token_ttl=60) as c:
        async with c.session.post(c.sim.base_url + QUERY_PATH, json={}) as r:
            assert r.status == 401
            assert (await r.json())["error"]["code"] == "access_token_invalid"
        await c.login()
        assert (await c.query(NL, "20230301", "20230301")).status == 200
        c.sim.clock.advance(61)
        a = await c.query(NL, "20230301", "20230301")
        assert a.status == 401 and a.code == "access_token_invalid"


@pytest.mark.parametrize(
    ("start", "end", "fragment"),
    [
        ("20230101", "20230201", "30 days"),
        ("20230110", "20230109", "before"),
        ("2023-01-01", "20230102", "YYYYMMDD"),
        ("20230230", "20230301", "not a valid date"),
    ],
)
async def test_date_rules(start: str, end: str, fragment: str) -> None:
    async with connect() as c:
        a = await c.query(NL, start, end)
        assert a.status == 400 and a.code == "invalid_params" and fragment in a.message


async def test_thirty_days_apart_is_allowed_and_end_date_is_inclusive() -> None:
    async with connect(videos_per_day=20) as c:
        assert (await c.query(NL, "20230101", "20230131")).status == 200
        one_day = await c.crawl(ANY, "20230301", "20230301")
        times = [v["create_time"] for v in one_day]
        assert times and all(MAR1 <= t < MAR1 + DAY for t in times)
        assert {v["id"] for v in one_day} == c.sim.oracle(ANY, MAR1, MAR1 + DAY)


async def test_paging_with_cursor_and_search_id() -> None:
    async with connect() as c:
        first = await c.query(ANY, "20230301", "20230302", max_count=50)
        d = first.data
        assert set(first.body) == {"data", "error"} and first.code == "ok"
        assert len(d["videos"]) == 50 and d["cursor"] == 50 and d["has_more"] is True
        assert d["search_id"].isdigit()
        second = await c.query(ANY, "20230301", "20230302", max_count=50, cursor=50,
                               search_id=d["search_id"])  # fmt: skip
        ids1 = [v["id"] for v in d["videos"]]
        ids2 = [v["id"] for v in second.data["videos"]]
        assert second.data["cursor"] == 100 and not set(ids1) & set(ids2)
        assert ids1 + ids2 == sorted(ids1 + ids2, reverse=True)  # newest first
        default = await c.query(ANY, "20230301", "20230302")
        assert len(default.data["videos"]) == 20
        too_many = await c.query(ANY, "20230301", "20230302", max_count=101)
        assert too_many.status == 400


async def test_unknown_search_id_is_rejected() -> None:
    async with connect() as c:
        a = await c.query(NL, "20230301", "20230301", cursor=100, search_id="7200000000000000001")
        assert a.status == 400
        assert a.message == "Search Id 7200000000000000001 is invalid or expired"


async def test_search_ids_expire() -> None:
    async with connect(search_ttl=10) as c:
        d = (await c.query(ANY, "20230301", "20230302")).data
        c.sim.clock.advance(11)
        a = await c.query(ANY, "20230301", "20230302", cursor=20, search_id=d["search_id"])
        assert a.status == 400 and "invalid or expired" in a.message


async def test_fields_filtering_and_unknown_fields() -> None:
    async with connect() as c:
        a = await c.query(NL, "20230301", "20230301", fields="id,username,hashtag_info_list")
        assert all(set(v) == {"id", "username", "hashtag_info_list"} for v in a.data["videos"])
        for bad in ("id,nonsense", "id,duration_type", ""):
            b = await c.query(NL, "20230301", "20230301", fields=bad)
            assert b.status == 400 and b.code == "invalid_params"


async def test_malformed_query_and_body() -> None:
    async with connect() as c:
        a = await c.query({"and": [{"operation": "LIKE", "field_name": "username",
                                    "field_values": ["x"]}]}, "20230301", "20230301")  # fmt: skip
        assert a.status == 400
        assert (await c.query({}, "20230301", "20230301")).status == 400
        assert (await c.post(QUERY_PATH, [1, 2], {"fields": "id"})).status == 400


async def test_is_random_returns_matches_without_paging() -> None:
    async with connect() as c:
        a = await c.query(ANY, "20230301", "20230303", is_random=True, max_count=30)
        d = a.data
        assert len(d["videos"]) == 30 and d["has_more"] is False
        truth = c.sim.oracle(ANY, MAR1, MAR1 + 3 * DAY)
        assert {v["id"] for v in d["videos"]} <= truth


def cond(op: str, name: str, *values: str) -> dict[str, Any]:
    return {"operation": op, "field_name": name, "field_values": list(values)}


async def _check(c: Client, query: dict[str, Any]) -> int:
    fields = "id,create_time,region_code,username,video_description,hashtag_names,music_id"
    fields += ",effect_ids,view_count,comment_count,video_duration"
    got = await c.crawl(query, "20230301", "20230302", fields)
    ids = {v["id"] for v in got}
    assert len(ids) == len(got)
    assert ids == c.sim.oracle(query, MAR1, MAR1 + 2 * DAY)
    return len(ids)


async def test_every_operation_and_field_agrees_with_the_oracle() -> None:
    async with connect() as c:
        day = c.sim.corpus.day(MAR1 // DAY).videos
        v = day[len(day) // 2]
        queries = [
            {"and": [cond("IN", "region_code", "NL", "DE")]},
            {"and": [cond("GT", "view_count", "1000")]},
            {"and": [cond("GTE", "view_count", str(v["view_count"]))]},
            {"and": [cond("LT", "comment_count", "1")]},
            {"and": [cond("LTE", "comment_count", "3")], "not": [cond("EQ", "region_code", "US")]},
            {"and": [cond("EQ", "create_date", "20230302")]},
            {"and": [cond("GTE", "create_date", "20230302")]},
            {"or": [cond("EQ", "hashtag_name", "fyp"), cond("EQ", "keyword", "election")]},
            {"and": [cond("EQ", "username", v["username"])]},
            {"and": [cond("EQ", "video_id", str(v["id"]))]},
            {"and": [cond("EQ", "music_id", str(v["music_id"]))]},
            {"and": [cond("IN", "video_length", "LONG", "EXTRA_LONG")]},
            {"and": [cond("IN", "effect_id", *(v["effect_ids"] or ["1"]))]},
        ]
        sizes = [await _check(c, q) for q in queries]
        assert all(n > 0 for n in sizes[:4]), sizes
        assert sizes[9] == 1
