"""Fact 11: the VCE test stage answers random samples of popular creators' videos, at most
5,000 records a day."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import date
from typing import Any

import anyio
import pytest

from harvester.simulator import vce
from harvester.simulator.corpus import DAY

from ._client import connect, day_epoch
from .test_rqs import all_results, create, window

pytestmark = pytest.mark.anyio

MAR1 = day_epoch(date(2023, 3, 1))
INSTANT: dict[str, Any] = {"rqs_created": 0.0, "rqs_validating": 0.0, "rqs_processing": 0.0}


async def test_a_task_is_a_fresh_random_sample_of_eligible_creators() -> None:
    async with connect(stage="test", **INSTANT) as c:
        groups = window(MAR1, MAR1 + 7 * DAY)
        population = vce.eligible_ids(c.sim, groups, MAR1, MAR1 + 7 * DAY)
        everything = c.sim.oracle(groups, MAR1, MAR1 + 7 * DAY)
        # Creators below 25,000 followers are out: a sizeable part of the corpus.
        assert 0 < len(population) < 0.6 * len(everything)
        samples = []
        for _ in range(2):
            task = await create(c, groups, fields="id,username", limit=200)
            records = await all_results(c, task)
            samples.append({r["id"] for r in records})
            assert len(records) == 200
            assert {r["id"] for r in records} <= population
            assert all(
                vce.followers(c.sim.corpus, r["username"]) >= vce.MIN_FOLLOWERS for r in records
            )
        # Random, not the first 200 by time, and drawn afresh for every task.
        assert samples[0] != samples[1]
        assert sorted(population)[:200] != sorted(samples[0])


async def test_a_task_under_its_limit_returns_the_whole_population() -> None:
    async with connect(stage="test", **INSTANT) as c:
        groups = window(MAR1, MAR1 + DAY)
        population = vce.eligible_ids(c.sim, groups, MAR1, MAR1 + DAY)
        task = await create(c, groups, limit=5_000)
        assert {r["id"] for r in await all_results(c, task)} == population


async def test_five_thousand_records_a_day_then_429() -> None:
    async with connect(stage="test", videos_per_day=2_000, **INSTANT) as c:
        groups = window(MAR1, MAR1 + 30 * DAY)
        delivered = 0
        for _ in range(2):
            task = await create(c, groups, limit=3_000)
            cursor = 0
            while True:
                a = await c.rqs("result", {"task_id": task, "cursor": cursor, "max_count": 10_000})
                if a.status != 200:
                    assert a.status == 429 and a.code == "daily_quota_exceeded"
                    break
                delivered += len(a.data["result"])
                cursor = a.data["cursor"]
                if not a.data["has_more"]:
                    break
        assert delivered == 5_000 and cursor == 2_000  # the second task's page was cut short
        spent = await c.rqs("create", {"category": "video", "condition_groups": groups})
        assert spent.status == 429 and spent.code == "daily_quota_exceeded"
        # The next quota day (00:00 UTC), well within the results' 24 h: the sample goes on.
        c.sim.clock.advance(DAY - c.sim.clock.seconds_into_day() + 1)
        await c.login()
        a = await c.rqs("result", {"task_id": task, "cursor": cursor, "max_count": 10_000})
        assert a.status == 200 and len(a.data["result"]) == 1_000


def _simulate_test_stage_process() -> tuple[int, int]:
    """`harvester simulate --stage test` in its own process: (status of a create over the test
    stage's 5,000 limit, status of one at it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "harvester.cli", "simulate", "--port", str(port), "--stage", "test"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        assert b"listening on" in proc.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        form = urllib.parse.urlencode(
            {"client_key": "sim-client-key", "client_secret": "sim-client-secret",
             "grant_type": "client_credentials"}
        ).encode()  # fmt: skip
        with urllib.request.urlopen(base + "/v2/oauth/token/", form) as r:
            token = json.loads(r.read())["access_token"]
        codes = []
        for limit in (5_001, 5_000):
            body = {"category": "video", "condition_groups": window(MAR1, MAR1 + DAY),
                    "fields": "id", "limit": limit}  # fmt: skip
            request = urllib.request.Request(
                base + "/v2/research/query_task/create/",
                data=json.dumps(body).encode(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request) as r:
                    codes.append(r.status)
            except urllib.error.HTTPError as e:
                codes.append(e.code)
        return codes[0], codes[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_harvester_simulate_serves_the_test_stage() -> None:
    assert await anyio.to_thread.run_sync(_simulate_test_stage_process) == (400, 200)
