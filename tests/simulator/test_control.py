"""The control routes, the testing helpers and the subprocess entry point."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import types
from collections.abc import Iterator
from datetime import date
from typing import Any

import aiohttp
import pytest

from harvester.simulator import Simulator, simulator_fixture

from ._client import Client, connect, day_epoch

pytestmark = pytest.mark.anyio

MAR1 = day_epoch(date(2023, 3, 1))
NL_SEED = [{"operator": "and", "conditions": [
    {"field": "region_code", "operator": "eq", "field_values": ["NL"]}]}]  # fmt: skip
NL_REST = {"and": [{"operation": "EQ", "field_name": "region_code", "field_values": ["NL"]}]}

simulator = simulator_fixture(seed=42, videos_per_day=50)


async def control(c: Client, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with c.session.request(method, c.sim.base_url + path, json=body) as r:
        return r.status, await r.json()


async def test_oracle_route_agrees_for_both_query_forms() -> None:
    async with connect() as c:
        span = {"start": MAR1, "end": MAR1 + 2 * 86_400}
        s1, seed = await control(c, "POST", "/_sim/oracle", {"condition_groups": NL_SEED, **span})
        s2, rest = await control(c, "POST", "/_sim/oracle", {"query": NL_REST, **span})
        assert s1 == s2 == 200 and seed == rest and seed["count"] == len(seed["ids"]) > 0
        assert all(isinstance(i, str) and len(i) == 19 for i in seed["ids"])
        crawled = await c.crawl(NL_REST, "20230301", "20230302")
        assert {str(v["id"]) for v in crawled} == set(seed["ids"])
        bad, _ = await control(c, "POST", "/_sim/oracle", {"query": {"and": []}, **span})
        assert bad == 400


async def test_stats_clock_and_faults_routes() -> None:
    async with connect() as c:
        await c.query(NL_REST, "20230301", "20230301")
        status, stats = await control(c, "GET", "/_sim/stats")
        assert status == 200 and stats["responses"]["rest.video_query"] == {"200": 1}
        assert stats["records_delivered"] > 0 and stats["tokens_issued"] == 1
        today = stats["quota"]["today"]
        assert stats["quota"]["days"][today] == {
            "requests": 1,
            "records": stats["records_delivered"],
        }
        before = c.sim.clock.now()
        _, moved = await control(c, "POST", "/_sim/clock", {"advance": 3_600})
        assert moved["now"] >= before + 3_600
        _, faults = await control(c, "POST", "/_sim/faults", {"http_500": 1.0})
        assert faults["http_500"] == 1.0
        assert (await c.query(NL_REST, "20230301", "20230301")).status == 500
        bad, _ = await control(c, "POST", "/_sim/faults", {"nope": 1})
        assert bad == 400
        _, stats = await control(c, "GET", "/_sim/stats")
        assert stats["faults"] == {"http_500": 1}


async def test_simulator_fixture(simulator: Simulator) -> None:
    assert simulator.config.seed == 42 and simulator.base_url.startswith("http://127.0.0.1:")
    async with aiohttp.ClientSession() as s, s.get(simulator.base_url + "/_sim/stats") as r:
        assert r.status == 200


@pytest.fixture
def subprocess_simulator() -> Iterator[tuple[subprocess.Popen[str], str]]:
    code = (
        "from harvester.simulator import SimulatorConfig, run_forever;"
        "run_forever(SimulatorConfig.for_profile('flaky', seed=3), '127.0.0.1', 0)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    try:
        assert proc.stdout is not None
        line = ""
        while not line.startswith("simulator listening on "):
            line = proc.stdout.readline()
            assert line, "the simulator exited before listening"
        yield proc, line.removeprefix("simulator listening on ").strip()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


async def test_run_forever_prints_its_url_and_stops_on_sigterm(
    subprocess_simulator: tuple[subprocess.Popen[str], str],
) -> None:
    proc, url = subprocess_simulator
    async with aiohttp.ClientSession() as s, s.get(url + "/_sim/faults") as r:
        assert r.status == 200 and (await r.json())["http_500"] > 0
    proc.terminate()
    assert await asyncio.to_thread(proc.wait, 10) == 0


def test_public_surface_is_complete() -> None:
    import harvester.simulator as pkg

    public = {
        name
        for name, value in vars(pkg).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    } - {"annotations"}
    assert public == set(pkg.__all__)
