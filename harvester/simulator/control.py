"""`/_sim/*`: what a test or benchmark running the simulator as a subprocess may ask or change.

Statistics, the oracle (ground truth for a query and window), the clock and the fault rates.
These routes need no token and are never counted or faulted.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from aiohttp import web

from harvester._exceptions import QueryError
from harvester.simulator.config import FaultConfig
from harvester.simulator.responses import BadBody, json_response, read_json

if TYPE_CHECKING:
    from harvester.simulator.app import Simulator

__all__ = ["add_routes"]

_FAULT_FIELDS = frozenset(f.name for f in dataclasses.fields(FaultConfig))


def add_routes(app: web.Application, sim: Simulator) -> None:
    async def stats(request: web.Request) -> web.Response:
        snap = sim.stats.snapshot(sim.ledger)
        snap["follow_quota"] = sim.follow_ledger.snapshot()
        snap["clock"] = sim.clock.now()
        snap["running_tasks"] = sim.tasks.running()
        return json_response(snap)

    async def oracle(request: web.Request) -> web.Response:
        try:
            body = await read_json(request)
            start, end = body.get("start"), body.get("end")
            if not isinstance(start, int) or not isinstance(end, int):
                raise BadBody("start and end must be epoch seconds")
            query: Any = (
                body["condition_groups"] if "condition_groups" in body else body.get("query")
            )
            if not isinstance(query, list | dict):
                raise BadBody("give condition_groups (a list) or query (an object)")
            as_of = body.get("as_of")  # with the indexing lag: the index at that time
            if as_of is not None and (
                isinstance(as_of, bool) or not isinstance(as_of, int | float)
            ):
                raise BadBody("as_of must be epoch seconds")
            ids = sim.oracle(query, start, end, as_of=as_of)
        except (BadBody, QueryError) as e:
            return json_response({"error": str(e)}, 400)
        return json_response({"ids": [str(i) for i in sorted(ids)], "count": len(ids)})

    async def clock(request: web.Request) -> web.Response:
        try:
            body = await read_json(request)
            advance = body.get("advance", 0)
            if isinstance(advance, bool) or not isinstance(advance, int | float) or advance < 0:
                raise BadBody("advance must be a non-negative number of seconds")
        except BadBody as e:
            return json_response({"error": str(e)}, 400)
        sim.clock.advance(float(advance))
        return json_response({"now": sim.clock.now()})

    async def faults(request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                body = await read_json(request)
                unknown = set(body) - _FAULT_FIELDS
                if unknown:
                    raise BadBody(f"unknown fault names: {', '.join(sorted(unknown))}")
                if not all(isinstance(v, int | float) for v in body.values()):
                    raise BadBody("fault rates must be numbers")
            except BadBody as e:
                return json_response({"error": str(e)}, 400)
            sim.set_faults(**body)
        return json_response(sim.faults.config.as_dict())

    app.router.add_get("/_sim/stats", stats)
    app.router.add_post("/_sim/oracle", oracle)
    app.router.add_post("/_sim/clock", clock)
    app.router.add_get("/_sim/faults", faults)
    app.router.add_post("/_sim/faults", faults)
