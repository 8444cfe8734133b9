"""Start a simulator in one line, in-process: `async with running_simulator(seed=3) as sim:`."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from harvester.simulator.app import Simulator
from harvester.simulator.config import Profile, SimulatorConfig

__all__ = ["running_simulator", "simulator_fixture"]


@asynccontextmanager
async def running_simulator(
    profile: Profile = "clean",
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: ssl.SSLContext | None = None,
    **overrides: Any,
) -> AsyncIterator[Simulator]:
    """A simulator listening on loopback for the block's duration (over https with `tls`).

    Keyword arguments are `SimulatorConfig` fields laid over `profile`'s preset; `faults` may be a
    mapping of rates (`faults={"http_500": 0.5}`) or a whole `FaultConfig`.
    """
    sim = Simulator(SimulatorConfig.for_profile(profile, **overrides))
    await sim.start(host, port, tls=tls)
    try:
        yield sim
    finally:
        await sim.close()


def simulator_fixture(profile: Profile = "clean", **overrides: Any) -> Callable[..., Any]:
    """A pytest fixture yielding a running simulator (use in anyio tests)::

    simulator = simulator_fixture("flaky", seed=3)
    """
    import pytest  # only needed by test suites

    @pytest.fixture
    async def simulator() -> AsyncIterator[Simulator]:
        async with running_simulator(profile, **overrides) as sim:
            yield sim

    return simulator
