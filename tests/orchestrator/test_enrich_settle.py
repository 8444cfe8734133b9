"""A scheduled study's enrichment: comments of videos whose counts have not settled are fetched
again on the next nightly run, their rows replaced (never duplicated), until they settle.

The simulator's comments appear over the first days of their video (and replies after their
comment), on the hour, all of them before the video's counts settle (10 days, fact 3): a
comment list fetched early is incomplete, one fetched after settling is final.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import duckdb
import pytest
import tomli_w

from harvester.orchestrator import EXIT_OK, Harvest, plan_report, status_report, verify_study
from harvester.orchestrator._targets import open_enrich_state
from harvester.simulator.testing import running_simulator
from tests.orchestrator import test_settle as settle
from tests.orchestrator.conftest import CREDS, DAY, SIM, epoch, options
from tests.orchestrator.test_enrich import read
from tests.orchestrator.test_settle import FIRST_RUN, load, next_night

pytestmark = pytest.mark.anyio

NIGHTS = 14
WHERE = "comment_count >= 2"


def write_study(tmp_path: Path, base_url: str) -> Path:
    path = settle.write_study(tmp_path, base_url, fields=[*settle.FIELDS, "comment_count"])
    tables = tomllib.loads(path.read_text())
    tables["enrich"] = [{"kind": "comments", "where": WHERE, "replies": True}]
    path.write_text(tomli_w.dumps(tables))
    return path


def comment_key(r: dict[str, Any]) -> tuple[int, int]:
    return (int(r["video_id"]), int(r["id"]))


async def test_unsettled_comments_are_fetched_again_each_night_and_replaced_exactly(
    tmp_path: Path,
) -> None:
    clock_start = epoch(FIRST_RUN) + 2 * 3600 + 600
    async with running_simulator("clean", **SIM, indexing_lag=True, clock_start=clock_start) as sim:
        path = write_study(tmp_path, sim.base_url)
        nights: list[dict[str, int]] = []
        first_fetch: dict[int, float] = {}
        for n in range(NIGHTS):
            if n:
                next_night(sim)
            study = load(path, sim)
            asked = sim.stats.requests_to("rest.comments")
            tonight = sim.clock.now()
            h = Harvest(study, CREDS, options(), clock=sim.clock.now)
            try:
                assert await h.run() == EXIT_OK
            finally:
                h.state.close()
            es = open_enrich_state(study)
            try:
                top = [r for r in es.targets("comments") if r.parent is None]
            finally:
                es.close()
            fetched = [int(r.target) for r in top if (r.fetched_at or 0) >= tonight]
            nights.append(
                {
                    "requests": sim.stats.requests_to("rest.comments") - asked,
                    "new": sum(1 for t in fetched if t not in first_fetch),
                    "refreshed": sum(1 for t in fetched if t in first_fetch),
                }
            )
            for t in fetched:
                first_fetch.setdefault(t, tonight)
            # Every night: each (video, comment) once in the dataset, whatever was refreshed.
            keys = [comment_key(r) for r in read(study.enrichments[0].output_path)]
            assert len(keys) == len(set(keys)), f"night {n}: a comment has two rows"

        # The dataset equals the oracle as of the last night: targets fetched while unsettled
        # were fetched again until they settled, or last night.
        now = sim.clock.now()
        con = duckdb.connect()
        targets = sorted(
            int(r[0])
            for r in con.execute(
                f"SELECT id FROM read_parquet('{study.output_path}/**/*.parquet', "
                f"hive_partitioning = true) WHERE {WHERE}"
            ).fetchall()
        )
        assert targets
        expected: dict[tuple[int, int], dict[str, Any]] = {}
        for t in targets:
            want = sim.enrich.expected("comments", t, replies=True, as_of=now)
            assert not isinstance(want, str)
            expected |= {comment_key(r): r for r in want}
        got = {comment_key(r): r for r in read(study.enrichments[0].output_path)}
        assert set(got) == set(expected)
        for key, row in expected.items():
            have = got[key]
            assert {k: have[k] for k in row} == row, key
        # Refreshing mattered: the comments of these targets as first fetched were not those
        # the dataset holds now (comments and replies posted since were added).
        grew = [
            t
            for t in targets
            if sim.enrich.expected("comments", t, replies=True, as_of=first_fetch[t])
            != sim.enrich.expected("comments", t, replies=True, as_of=now)
        ]
        assert grew, "no target's comments changed after its first fetch"
        # A settled target is not fetched again: the last night refreshes at most the targets
        # of the last 10 days' videos.
        assert nights[-1]["refreshed"] <= sum(1 for t in targets if (t >> 32) > now - 11 * DAY)

        # status says how many were fetched before their counts settled (tonight's targets
        # younger than 10 days), and that the next run fetches them again.
        line = next(
            x for x in status_report(study)["text"].splitlines() if x.startswith("enrich comments")
        )
        assert "fetched before their counts settled (next run again)" in line, line

        # plan gives the daily cost of staying current: within a stated factor of what the last
        # night (a steady one: as many targets settle as arrive) spent. Measured: 593 and 713.
        plan = plan_report(study)
        upkeep = plan["enrichments"][0]["daily_requests_to_stay_current"]
        spent = nights[-1]["requests"]
        assert spent / 1.5 <= upkeep <= spent * 1.5, (upkeep, spent)
        assert "enrich comments upkeep" in plan["text"] and "on 11 nights" in plan["text"]

        # Hive-partitioned by retrieval date, and verify agrees with the state.
        root = study.enrichments[0].output_path
        assert all(p.parent.name.startswith("retrieved_date=") for p in root.rglob("*.parquet"))
        checked = verify_study(study)
        assert checked["ok"], checked["text"]
        assert checked["enrichments"][0]["duplicates"] == 0

        assert sum(x["refreshed"] for x in nights) > 0
        print(
            f"\nenrich refresh: {NIGHTS} nights, {len(targets)} targets, {len(got)} comment "
            f"rows, {len(grew)} targets whose comments grew after the first fetch; comment "
            f"requests per night {[x['requests'] for x in nights]}; targets new "
            f"{[x['new'] for x in nights]}, refreshed {[x['refreshed'] for x in nights]}"
        )
