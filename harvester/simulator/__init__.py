"""A faithful, fast, seeded simulator of the TikTok Research API and the RQS HTTP binding.

The demo, the tests and the benchmarks harvest against it: `running_simulator()` in-process,
`run_forever()` for a separate process, and `Simulator.oracle` for the ground truth.

Control routes (no token, never counted or faulted), for a simulator in another process:
`GET /_sim/stats`, `POST /_sim/oracle` (`{"condition_groups"|"query", "start", "end"}`),
`POST /_sim/clock` (`{"advance": seconds}`), `GET|POST /_sim/faults` (`{"http_500": 0.5}`).
"""

from __future__ import annotations

from harvester.simulator.app import Simulator, run_forever, serve
from harvester.simulator.clock import Clock
from harvester.simulator.config import FAULT_KINDS, PROFILES, FaultConfig, Profile, SimulatorConfig
from harvester.simulator.corpus import Corpus
from harvester.simulator.ledger import Stats
from harvester.simulator.testing import running_simulator, simulator_fixture

__all__ = [
    "FAULT_KINDS",
    "PROFILES",
    "Clock",
    "Corpus",
    "FaultConfig",
    "Profile",
    "Simulator",
    "SimulatorConfig",
    "Stats",
    "run_forever",
    "running_simulator",
    "serve",
    "simulator_fixture",
]
