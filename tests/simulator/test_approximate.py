"""Approximate matching, as the public Research API does it (fact 1): EQ/IN on string fields
also match near strings, in `not` too; the oracle stays exact. And the documented field shapes
(fact 8) the corpus serves, variant shapes included."""

from __future__ import annotations

from datetime import date
from typing import Any

import click
import pytest

from harvester.cli import _simulator_settings
from harvester.query import parse_rest_query
from harvester.simulator import SimulatorConfig
from harvester.simulator.corpus import REGIONS
from harvester.simulator.fuzzy import near

from ._client import connect, day_epoch

pytestmark = pytest.mark.anyio

DAY1 = date(2023, 3, 1)
FIELDS = "id,create_time,username,region_code,hashtag_names"


def test_near_is_case_prefix_or_one_edit() -> None:
    assert near("Election", "election") and near("elect", "elections2024")
    assert near("vote", "vite") and near("vote", "votes") and near("vote", "vot")
    assert near("vote", "voter2")  # a prefix: found
    assert not near("vote", "veto") and not near("news", "climate")
    assert not near("a", "ab")  # one letter is no prefix worth matching


@pytest.mark.parametrize(
    ("profile", "override", "expected"),
    [
        ("clean", None, False),
        ("quota", None, False),
        ("flaky", None, True),
        ("hostile", None, True),
        ("flaky", False, False),
        ("clean", True, True),
    ],
)
def test_the_mode_is_on_in_flaky_and_hostile_and_its_own_setting(
    profile: Any, override: bool | None, expected: bool
) -> None:
    kw: dict[str, Any] = {} if override is None else {"approximate_matching": override}
    assert SimulatorConfig(profile=profile, **kw).approximate_matching is expected
    assert SimulatorConfig.for_profile(profile, **kw).approximate_matching is expected


def test_the_cli_sets_the_mode_on_or_off() -> None:
    assert _simulator_settings(("approximate_matching=0",)) == {"approximate_matching": False}
    assert _simulator_settings(("approximate-matching=on", "latency=0.5")) == {
        "approximate_matching": True,
        "latency": 0.5,
    }
    with pytest.raises(click.BadParameter, match="on or off"):
        _simulator_settings(("approximate_matching=maybe",))


async def _ids(c: Any, query: dict[str, Any]) -> set[int]:
    await c.login()
    return {int(v["id"]) for v in await c.crawl(query, "20230301", "20230302", FIELDS)}


async def test_eq_and_in_also_return_near_strings_and_the_oracle_stays_exact() -> None:
    start, end = day_epoch(DAY1), day_epoch(DAY1) + 2 * 86_400
    async with connect(approximate_matching=True) as c:
        videos = list(c.sim.corpus.videos(start, end))
        # A creator's name cut short: the API finds every name it starts (and near ones).
        name = next(v["username"] for v in videos if "\x00" not in v["username"])
        stem = name[:-1]
        hashtags = {
            "operation": "IN",
            "field_name": "hashtag_name",
            "field_values": ["election", "Vote"],
        }
        queries = [
            {"and": [{"operation": "EQ", "field_name": "username", "field_values": [stem]}]},
            {"and": [hashtags]},
            {"and": [{"operation": "EQ", "field_name": "region_code", "field_values": ["nl"]}]},
        ]
        near_found = 0
        for query in queries:
            got = await _ids(c, query)
            exact = c.sim.oracle(query, start, end)
            assert exact <= got  # a superset: nothing true is missing
            near_found += len(got - exact)
        assert near_found > 0 and c.sim.stats.faults["approximate_match"] == near_found
        # The region code matched case-blind only: "nl" finds NL, nothing near it.
        nl = {v["id"] for v in videos if v["region_code"] == "NL"}
        assert await _ids(c, queries[2]) == nl
    async with connect() as c:  # the clean profile: exact
        assert await _ids(c, queries[1]) == c.sim.oracle(queries[1], start, end)


async def test_a_not_on_an_approximate_field_excludes_true_matches() -> None:
    start, end = day_epoch(DAY1), day_epoch(DAY1) + 2 * 86_400
    query = {
        "and": [{"operation": "IN", "field_name": "region_code", "field_values": ["NL", "DE"]}],
        "not": [{"operation": "EQ", "field_name": "hashtag_name", "field_values": ["election"]}],
    }
    async with connect(approximate_matching=True) as c:
        got = await _ids(c, query)
        truth = c.sim.oracle(query, start, end)
        lost = truth - got
        # "#elections2024" is near "election": the server-side NOT drops those true matches.
        assert lost and got <= truth
        assert c.sim.stats.faults["approximate_exclusion"] == len(lost)
        videos = {v["id"]: v for v in c.sim.corpus.videos(start, end)}
        assert all(any(near("election", h) for h in videos[i]["hashtag_names"]) for i in lost)
        assert parse_rest_query(query).matches(videos[next(iter(lost))])


def test_the_corpus_speaks_the_codebook() -> None:
    from harvester.simulator.corpus import Corpus

    corpus = Corpus(5, videos_per_day=200)
    videos = list(corpus.videos(day_epoch(DAY1), day_epoch(DAY1) + 3 * 86_400))
    assert "CA" not in REGIONS and not any(v["region_code"] == "CA" for v in videos)
    effects = [e for v in videos for e in v["effect_info_list"]]
    assert effects and all(
        set(e) == {"effect_id", "effect_name", "effect_photo_url"}
        and e["effect_photo_url"].startswith("https://")
        for e in effects
    )
    tags = [t for v in videos for t in v["video_tag"]]
    assert tags and {(t["number"], t["type"]) for t in tags} <= {
        (1, "AIGC Type"),
        (2, "AIGC Type"),
        (1, "Branded Type"),
        (7, "Branded Type"),
    }
    assert all(isinstance(v["video_label"], dict) and "content" in v["video_label"] for v in videos)


async def test_field_variants_serve_every_documented_shape() -> None:
    fields = "id,create_time,video_tag,favorites_count,video_label,effect_info_list"
    seen: set[str] = set()
    async with connect("hostile", faults={"field_variants": 1.0}) as c:
        await c.login()
        query = {"and": [{"operation": "IN", "field_name": "region_code",
                          "field_values": ["NL", "DE", "US"]}]}  # fmt: skip
        for v in await c.crawl(query, "20230301", "20230303", fields):
            if isinstance(v.get("video_tag"), dict):
                seen.add("video_tag as one struct")
            if "favourites_count" in v:
                assert "favorites_count" not in v
                seen.add("favourites_count")
            if "label_id" in (v.get("video_label") or {}):
                seen.add("key inside video_label")
            if any("effect_type" in e for e in v.get("effect_info_list") or []):
                seen.add("key inside effect_info_list")
        assert c.sim.stats.faults["field_variants"] > 0
        # The corpus itself is never changed: a variant is made on a copy.
        for v in c.sim.corpus.videos(day_epoch(DAY1), day_epoch(DAY1) + 86_400):
            assert isinstance(v["video_tag"], list) and "favourites_count" not in v
    assert seen == {
        "video_tag as one struct",
        "favourites_count",
        "key inside video_label",
        "key inside effect_info_list",
    }
