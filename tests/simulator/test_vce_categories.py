"""The VCE's categories beyond `video` over the RQS binding: every category serves, for many
targets at once, exactly the rows the Research API's endpoint gives per target (the oracle),
refused accounts give none, and the stage rules hold (limit, test-stage creators and sample)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from harvester.kinds import KINDS
from harvester.simulator import vce
from harvester.simulator.corpus import DAY
from harvester.simulator.vce_categories import CATEGORIES

from ._client import Client, connect, day_epoch
from .test_rqs import all_results

pytestmark = pytest.mark.anyio

MAR1 = day_epoch(date(2023, 3, 1))
NOW: dict[str, Any] = {"rqs_created": 0.0, "rqs_validating": 0.0, "rqs_processing": 0.0}
VERDICTS = {"account_private": 0.1, "account_deleted": 0.05, "account_under_18": 0.05}


def targets_of(c: Client, key: str, n: int) -> list[Any]:
    """`n` distinct targets from two days of the corpus: video ids, creators or playlists."""
    out: list[Any] = []
    for v in c.sim.corpus.videos(MAR1, MAR1 + 2 * DAY):
        value = {"video_id": v["id"], "username": v["username"], "playlist_id": v["playlist_id"]}
        t = value[key]
        if t and t not in out and (key != "video_id" or v["comment_count"] >= 3):
            out.append(t)
        if len(out) == n:
            break
    return out


async def category_task(c: Client, category: str, targets: list[Any], **kw: Any) -> int:
    kind = KINDS[CATEGORIES[category]]
    values = [str(t) for t in targets]
    body = {
        "category": category,
        "condition_groups": [
            {"operator": "and", "conditions": [
                {"field": kind.target, "operator": "IN", "field_values": values}]}
        ],
        "fields": kw.pop("fields", ",".join(n for n, _ in kind.columns)),
        **kw,
    }  # fmt: skip
    a = await c.rqs("create", body)
    assert a.status == 200, a.body
    return int(a.data["task_id"])


def oracle_rows(c: Client, category: str, targets: list[Any]) -> list[dict[str, Any]]:
    kind = KINDS[CATEGORIES[category]]
    renames = dict(kind.renames)
    rows = []
    for t in targets:
        got = c.sim.enrich.expected(kind.name, t, replies=kind.name == "comments")
        if isinstance(got, list):
            rows += [{kind.target: t} | {renames.get(k, k): v for k, v in r.items()} for r in got]
    return rows


@pytest.mark.parametrize("category", sorted(CATEGORIES))
async def test_every_category_serves_the_endpoints_rows_for_many_targets(category: str) -> None:
    async with connect(**NOW, faults=VERDICTS) as c:
        kind = KINDS[CATEGORIES[category]]
        targets = targets_of(c, kind.target, 12)
        assert len(targets) == 12
        task = await category_task(c, category, targets, limit=100_000)
        got = await all_results(c, task, page=37)
        want = oracle_rows(c, category, targets)
        assert want, "the oracle has rows for these targets"
        assert got == want  # the same rows, target by target, in serving order
        if kind.target == "username":
            refused = [t for t in targets if c.sim.enrich.account(t) != "ok"]
            assert refused and not {r["username"] for r in got} & set(refused)


async def test_fields_pick_columns_the_key_always_comes_and_bad_bodies_are_refused() -> None:
    async with connect(**NOW) as c:
        videos = targets_of(c, "video_id", 3)
        task = await category_task(c, "comment", videos, fields="text,like_count", limit=10_000)
        got = await all_results(c, task)
        assert got and all(list(r) == ["video_id", "text", "like_count"] for r in got)
        for body, says in (
            ({"category": "hashtags"}, "unknown category"),
            (
                {
                    "category": "comment",
                    "condition_groups": [{"operator": "and", "conditions": [
                        {"field": "username", "operator": "IN", "field_values": ["a"]}]}],
                    "fields": "text",
                },
                "queried by video_id only",
            ),
            (
                {
                    "category": "profile",
                    "condition_groups": [{"operator": "and", "conditions": [
                        {"field": "username", "operator": "IN", "field_values": ["a"]}]}],
                    "fields": "bio_description,colour",
                },
                "unknown field(s) for category 'profile': colour",
            ),
        ):  # fmt: skip
            a = await c.rqs("create", body)
            assert (a.status, a.code) == (400, "invalid_params") and says in a.message, a.body


async def test_limit_saturates_and_the_test_stage_keeps_popular_creators_in_a_fresh_sample() -> (
    None
):
    async with connect(**NOW) as c:
        videos = targets_of(c, "video_id", 10)
        whole = oracle_rows(c, "comment", videos)
        task = await category_task(c, "comment", videos, limit=50)
        got = await all_results(c, task)
        assert len(got) == 50 and all(r in whole for r in got)
    async with connect(**NOW, stage="test") as c:
        names = targets_of(c, "username", 40)
        popular = [n for n in names if vce.followers(c.sim.corpus, n) >= vce.MIN_FOLLOWERS]
        assert popular and len(popular) < len(names)
        task = await category_task(c, "profile", names, limit=5_000)
        got = await all_results(c, task)
        assert {r["username"] for r in got} <= set(popular)
        assert {r["username"] for r in got} == {
            n for n in popular if c.sim.enrich.account(n) == "ok"
        }
        first = await all_results(c, await category_task(c, "liked_videos", popular, limit=20))
        again = await all_results(c, await category_task(c, "liked_videos", popular, limit=20))
        assert len(first) == len(again) == 20 and first != again  # each task draws afresh


async def test_a_creators_profile_and_the_test_stage_agree_on_its_followers() -> None:
    """One follower count per creator: the profile serves the count the test stage's
    25,000-follower rule reads, so a profile shows why its creator was (not) sampled."""
    async with connect(**NOW) as c:
        names = targets_of(c, "username", 40)
        counts = {n: c.sim.enrich.profile(n)["follower_count"] for n in names}
        assert counts == {n: vce.followers(c.sim.corpus, n) for n in names}
        assert min(counts.values()) < vce.MIN_FOLLOWERS <= max(counts.values())
    async with connect(**NOW, stage="test") as c:
        task = await category_task(c, "profile", names, limit=5_000)
        got = await all_results(c, task)
        assert got and all(r["follower_count"] >= vce.MIN_FOLLOWERS for r in got)
