"""Helpers for the reliability suite: the chaos script as a module, configs, CLI runs."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HARVESTER = [sys.executable, "-m", "harvester.cli"]
SIM_ENV = {
    **os.environ,
    "TIKTOK_CLIENT_KEY": "sim-client-key",
    "TIKTOK_CLIENT_SECRET": "sim-client-secret",
}


def load_script(name: str) -> ModuleType:
    """`scripts/<name>.py` as a module (scripts/ is not a package)."""
    if f"scripts_{name}" in sys.modules:
        return sys.modules[f"scripts_{name}"]
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def chaos() -> ModuleType:
    return load_script("chaos")


def harvester(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The real CLI in its own process, as a scheduler runs it."""
    return subprocess.run(
        [*HARVESTER, *args],
        capture_output=True,
        text=True,
        env=SIM_ENV if env is None else env,
        cwd=cwd,
        timeout=timeout,
    )


def simulator_process(
    chaos: ModuleType,
    tmp_path_factory: pytest.TempPathFactory,
    profile: str,
    seed: int,
    *,
    latency: float = 0.0,
) -> Iterator[Any]:
    """`harvester simulate` in its own process, stopped when the fixture ends (`yield from`)."""
    sim = chaos.Simulator(tmp_path_factory.mktemp("sim"), profile, seed, latency=latency)
    try:
        yield sim
    finally:
        sim.close()


@pytest.fixture(scope="module")
def flaky_sim(chaos: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """`harvester simulate --profile flaky` in its own process, for the module."""
    yield from simulator_process(chaos, tmp_path_factory, "flaky", 11)


@pytest.fixture(scope="module")
def clean_sim(chaos: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from simulator_process(chaos, tmp_path_factory, "clean", 5)
