"""Each fault class fires as described, reproducibly, and never stops a correct client."""

from __future__ import annotations

from datetime import date
from typing import Any

import aiohttp
import pytest

from harvester.simulator import FAULT_KINDS, SimulatorConfig

from ._client import Client, RobustCrawler, connect, day_epoch
from .test_rqs import create, window

pytestmark = pytest.mark.anyio

ANY = {"not": [{"operation": "EQ", "field_name": "region_code", "field_values": ["XX"]}]}
KEYWORD = {"and": [{"operation": "EQ", "field_name": "keyword", "field_values": ["election"]}]}
MAR1 = day_epoch(date(2023, 3, 1))
RQS_NOW: dict[str, Any] = {"rqs_created": 0.0, "rqs_validating": 0.0, "rqs_processing": 0.0}


async def page(c: Client, cursor: int = 0, search_id: str = "", **kw: Any) -> Any:
    return await c.query(ANY, "20230301", "20230301", max_count=50, cursor=cursor,
                         search_id=search_id, **kw)  # fmt: skip


def test_profiles_are_presets_with_overrides() -> None:
    flaky = SimulatorConfig.for_profile("flaky", faults={"http_500": 0.0})
    assert flaky.faults.http_500 == 0.0 and flaky.faults.short_page > 0
    assert SimulatorConfig.for_profile("quota").daily_requests < 1_000
    hostile = SimulatorConfig.for_profile("hostile").faults
    assert hostile.hostile_values > 0 and hostile.http_500 == 0
    assert all(getattr(SimulatorConfig().faults, k) == 0 for k in FAULT_KINDS)
    # Built directly, a profile still applies its presets to values left at their defaults.
    assert (
        SimulatorConfig(profile="flaky", seed=2).faults
        == SimulatorConfig.for_profile("flaky").faults
    )
    assert SimulatorConfig(profile="quota").daily_requests == 40
    with pytest.raises(TypeError):
        SimulatorConfig.for_profile("flaky", faults={"no_such_fault": 1.0})


async def test_500s_come_in_bounded_runs_and_count_against_quota() -> None:
    async with connect(faults={"http_500": 0.2, "http_500_max_run": 4}, seed=3) as c:
        statuses = [(await page(c)).status for _ in range(80)]
        runs = "".join("x" if s == 500 else "." for s in statuses).split(".")
        assert max(len(r) for r in runs) in (2, 3, 4)
        assert c.sim.ledger.requests[c.sim.clock.today().isoformat()] == 80
        bodies = set()
        c.sim.set_faults(http_500=1.0)
        for _ in range(12):
            a = await page(c)
            bodies.add(a.body["error"]["message"] if isinstance(a.body, dict) else a.body)
        assert {"Something went wrong. Please try again later.", "Server Internal Error"} <= bodies


async def test_gateway_timeout_is_html_and_empty_bodies_are_empty() -> None:
    async with connect(faults={"gateway_timeout": 1.0, "gateway_delay": 0.01}) as c:
        a = await page(c)
        assert a.status == 504 and isinstance(a.body, str) and "<html>" in a.body
        c.sim.set_faults(gateway_timeout=0.0, empty_body=1.0)
        b = await page(c)
        assert b.status in (502, 503) and b.body == ""


async def test_truncated_body_is_not_json() -> None:
    async with connect(faults={"truncated_body": 1.0}) as c:
        a = await page(c)
        assert a.status == 200 and isinstance(a.body, str) and a.body.startswith('{"data"')


async def test_connection_reset_and_slow_response() -> None:
    async with connect(faults={"connection_reset": 1.0}) as c:
        with pytest.raises(aiohttp.ClientError):
            await page(c)
        c.sim.set_faults(connection_reset=0.0, slow_response=1.0, slow_delay=0.5)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.1)) as s:
            impatient = Client(c.sim, s)
            impatient.token = c.token
            with pytest.raises(TimeoutError):
                await page(impatient)
        assert c.sim.stats.faults["slow_response"] == 1


async def test_token_expiry_revokes_the_token() -> None:
    async with connect(faults={"token_expiry": 1.0}) as c:
        a = await page(c)
        assert a.status == 401 and a.code == "access_token_invalid"
        c.sim.set_faults(token_expiry=0.0)
        assert (await page(c)).status == 401  # the old token stays dead
        await c.login()
        assert (await page(c)).status == 200


async def test_window_failure_spares_one_day_windows() -> None:
    faults = {"window_failure": 1.0, "window_failure_prob": 1.0, "window_failure_matches": 1}
    async with connect(faults=faults) as c:
        two_days = await c.query(ANY, "20230301", "20230302")
        assert two_days.status == 500
        assert (await c.query(ANY, "20230301", "20230301")).status == 200


async def test_window_failure_comes_with_many_matches() -> None:
    # A bad day fails a window in proportion to what it matches (the 500s come on queries that
    # match many videos over a long range): one matching nothing never fails for it.
    faults = {"window_failure": 1.0, "window_failure_prob": 1.0, "window_failure_matches": 10**9}
    async with connect(faults=faults) as c:
        answers = [await c.query(ANY, "20230301", "20230310") for _ in range(20)]
        assert all(a.status == 200 for a in answers)
    faults["window_failure_matches"] = 10
    async with connect(faults=faults) as c:
        assert (await c.query(ANY, "20230301", "20230310")).status == 500


async def test_search_id_rejected_and_invalid_cursor_are_bounded_per_window() -> None:
    async with connect(faults={"search_id_rejected": 1.0}) as c:
        sid = (await page(c)).data["search_id"]
        answers = [await page(c, 50, sid) for _ in range(3)]
        assert [a.status for a in answers] == [400, 400, 200]
        assert answers[0].message == f"Search Id {sid} is invalid or expired"
    async with connect(faults={"invalid_cursor": 1.0}) as c:
        sid = (await page(c)).data["search_id"]
        answers = [await page(c, 50, sid) for _ in range(3)]
        assert [a.status for a in answers] == [400, 400, 200]
        assert answers[0].message == "Invalid count or cursor"


async def test_short_pages_keep_has_more_and_lose_nothing() -> None:
    async with connect(faults={"short_page": 1.0}) as c:
        truth = c.sim.oracle(ANY, MAR1, MAR1 + 86_400)
        got: list[int] = []
        cursor, sid, short = 0, "", 0
        while True:
            d = (await page(c, cursor, sid)).data
            short += len(d["videos"]) < 50 and d["has_more"]
            got += [v["id"] for v in d["videos"]]
            cursor, sid = d["cursor"], d["search_id"]
            if not d["has_more"]:
                break
        assert short > 0 and set(got) == truth and len(got) == len(truth)


async def test_cursor_missing_or_null() -> None:
    async with connect(faults={"cursor_missing": 1.0}) as c:
        d = (await page(c)).data
        assert d.get("cursor") is None and d["has_more"] and len(d["videos"]) == 50


async def test_silent_empty_once_per_window() -> None:
    async with connect(faults={"silent_empty": 1.0}) as c:
        first = (await page(c)).data
        assert first["videos"] == [] and first["has_more"] is False
        assert len((await page(c)).data["videos"]) == 50


async def test_duplicate_repeats_a_video_of_the_previous_page() -> None:
    async with connect(faults={"duplicate": 1.0}) as c:
        d1 = (await page(c)).data
        d2 = (await page(c, 50, d1["search_id"])).data
        assert {v["id"] for v in d1["videos"]} & {v["id"] for v in d2["videos"]}


async def test_fuzzy_false_positives_only_for_keyword_and_hashtag() -> None:
    async with connect(faults={"fuzzy_false_positive": 0.2}) as c:
        got = await c.crawl(KEYWORD, "20230301", "20230303", "id,video_description")
        truth = c.sim.oracle(KEYWORD, MAR1, MAR1 + 3 * 86_400)
        extra = {v["id"] for v in got} - truth
        assert extra and truth <= {v["id"] for v in got}
        assert all("election" not in v["video_description"] for v in got if v["id"] in extra)
        exact = await c.crawl(ANY, "20230301", "20230301")
        assert {v["id"] for v in exact} == c.sim.oracle(ANY, MAR1, MAR1 + 86_400)


async def test_control_chars_in_strings() -> None:
    async with connect(faults={"control_chars": 1.0}) as c:
        d = (await page(c, fields="id,username")).data
        assert all(any(ord(ch) < 32 or ord(ch) == 127 for ch in v["username"])
                   for v in d["videos"])  # fmt: skip


async def test_hostile_profile_shapes() -> None:
    faults = {"hostile_values": 0.3, "wrong_types": 0.3, "missing_fields": 0.3,
              "extra_fields": 0.3, "huge_page": 1.0}  # fmt: skip
    async with connect("hostile", faults=faults) as c:
        fields = "id,create_time,region_code,username,like_count,hashtag_names"
        a = await c.query(ANY, "20230301", "20230302", fields, max_count=20)
        videos = a.data["videos"]
        assert len(videos) == 100  # a huge page: five times max_count
        assert any(not isinstance(v.get("like_count", 0), int) for v in videos)
        assert any(v.get("hashtag_names", []) is None for v in videos)
        assert any(set(v) - set(fields.split(",")) for v in videos)
        assert any(set(fields.split(",")) - set(v) for v in videos)
        assert all("id" in v and "create_time" in v for v in videos)
        odd = [v["region_code"] for v in videos if len(str(v.get("region_code", "NL"))) != 2]
        assert odd
        for kind in ("hostile_values", "wrong_types", "missing_fields", "extra_fields"):
            assert c.sim.stats.faults[kind] > 0


async def test_rqs_analysis_failed_is_transient_and_5xx_hit_status_and_result() -> None:
    async with connect(faults={"analysis_failed": 1.0}, **RQS_NOW) as c:
        groups = window(MAR1, MAR1 + 86_400)
        states = []
        for _ in range(3):
            task = await create(c, groups)
            states.append((await c.rqs("status", {"task_id": task})).data)
        assert [s["status"] for s in states] == ["AnalysisFailed", "AnalysisFailed", "Completed"]
        assert states[0]["message"]
        c.sim.set_faults(http_500=1.0, http_500_max_run=1)  # 500, free call, 500, ...
        assert (await c.rqs("status", {"task_id": task})).status == 500
        assert (await c.rqs("status", {"task_id": task})).status == 200
        assert (await c.rqs("result", {"task_id": task})).status == 500


async def _fault_trace(seed: int) -> list[tuple[int, tuple[int, ...]]]:
    async with connect("flaky", seed=seed, faults={"slow_response": 0.0,
                                                   "connection_reset": 0.0}) as c:  # fmt: skip
        trace = []
        for day in range(1, 25):
            a = await c.query(ANY, f"202303{day:02d}", f"202303{day + 2:02d}")
            if a.status == 401:
                await c.login()
            whole = a.status == 200 and isinstance(a.body, dict)  # not a truncated body
            ids = tuple(v["id"] for v in a.data["videos"]) if whole else ()
            trace.append((a.status, ids))
        return trace


async def test_same_seed_same_fault_sequence() -> None:
    a, b, other = await _fault_trace(11), await _fault_trace(11), await _fault_trace(12)
    assert a == b
    assert a != other


async def test_a_robust_client_completes_a_flaky_crawl_exactly() -> None:
    """Every flaky fault at once, with rates raised: the crawl still equals the oracle."""
    rates = {"http_500": 0.1, "short_page": 0.2, "duplicate": 0.2, "search_id_rejected": 0.1,
             "invalid_cursor": 0.1, "cursor_missing": 0.2, "silent_empty": 0.3,
             "window_failure": 0.3, "fuzzy_false_positive": 0.1, "slow_delay": 0.3,
             "gateway_delay": 0.01}  # fmt: skip
    async with connect("flaky", seed=5, videos_per_day=300, faults=rates) as c:
        timeout = aiohttp.ClientTimeout(total=0.2)
        async with aiohttp.ClientSession(timeout=timeout) as s:
            client = Client(c.sim, s)
            query = {"or": KEYWORD["and"] + ANY["not"][:0]}
            crawler = RobustCrawler(client, query, "id,create_time,video_description")
            got = await crawler.window(date(2023, 3, 1), date(2023, 3, 14))
        truth = c.sim.oracle(query, MAR1, MAR1 + 14 * 86_400)
        assert set(got) == truth
        faults = c.sim.stats.faults
        assert sum(faults.values()) > 10 and len(faults) >= 6, faults
