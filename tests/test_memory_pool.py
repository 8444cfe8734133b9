"""`harvester run` makes Arrow allocate from jemalloc (or the system allocator), not mimalloc,
unless the user chose a pool. Each case runs in a fresh interpreter: the pool is process-wide."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pytest

_PROBE = (
    "import pyarrow as pa\n"
    "from harvester._arrow import use_lean_memory_pool\n"
    "print(use_lean_memory_pool(), pa.default_memory_pool().backend_name)\n"
)


def probe(env_pool: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if env_pool is not None:
        env["ARROW_DEFAULT_MEMORY_POOL"] = env_pool
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, check=True
    )
    return out.stdout.split()


def test_a_run_allocates_from_jemalloc_or_the_system_allocator() -> None:
    try:
        pa.jemalloc_memory_pool()
        expected = "jemalloc"
    except NotImplementedError:  # a pyarrow built without it
        expected = "system"
    assert probe(None) == [expected, expected]


@pytest.mark.parametrize("chosen", ["system", "mimalloc"])
def test_the_users_choice_of_pool_is_kept(chosen: str) -> None:
    assert probe(chosen) == [chosen, chosen]
