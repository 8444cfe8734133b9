"""Fixtures for the API layer: a scripted fake API, sessions on it, hooks that record."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from harvester._exceptions import QuotaExhausted
from harvester.api import ApiSession, Credentials, RetryPolicy
from harvester.simulator.app import Simulator
from harvester.simulator.testing import running_simulator
from tests.api.fakeapi import KEY, SECRET, FakeApi, running_fake

#: Retries as in production, with waits scaled down to nothing: tests count attempts, not time.
FAST_RETRY = RetryPolicy(attempts=10, wait_initial=0.5, wait_jitter=0.0, wait_scale=1e-4)

#: Every delay is chosen as in production but slept for a millionth of it.
FAST = RetryPolicy(attempts=4, wait_initial=0.5, wait_max=8.0, wait_jitter=0.0, wait_scale=1e-6)


@dataclass
class RecordingHooks:
    """Quota hooks that remember every call; `budget` requests before QuotaExhausted."""

    budget: int | None = None
    reserved: list[str] = field(default_factory=list)
    settled: list[tuple[str, bool, int]] = field(default_factory=list)
    retries: list[tuple[str, int, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def reserve(self, endpoint: str) -> None:
        if self.budget is not None and len(self.reserved) >= self.budget:
            raise QuotaExhausted("ledger: the day's requests are spent")
        self.reserved.append(endpoint)

    def settle(self, endpoint: str, *, ok: bool, records: int) -> None:
        self.settled.append((endpoint, ok, records))

    def on_retry(self, kind: str, attempt: int, delay: float) -> None:
        self.retries.append((kind, attempt, delay))

    def on_error(self, kind: str) -> None:
        self.errors.append(kind)


@pytest.fixture
async def fake() -> AsyncIterator[FakeApi]:
    async with running_fake() as api:
        yield api


@pytest.fixture
def hooks() -> RecordingHooks:
    return RecordingHooks()


SessionFactory = Callable[..., ApiSession]


@pytest.fixture
async def make_session(fake: FakeApi, hooks: RecordingHooks) -> AsyncIterator[SessionFactory]:
    made: list[ApiSession] = []

    def make(**kw: Any) -> ApiSession:
        kw.setdefault("retry", FAST)
        kw.setdefault("hooks", hooks)
        kw.setdefault("requests_per_second", 1000.0)
        kw.setdefault("request_timeout", 5.0)
        s = ApiSession(fake.base_url, Credentials(KEY, SECRET), **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        await s.close()


@asynccontextmanager
async def sim_session(
    hooks: RecordingHooks | None = None, *, retry: RetryPolicy = FAST_RETRY, **overrides: Any
) -> AsyncIterator[tuple[Simulator, ApiSession]]:
    """A clean simulator (seed 1, `overrides` on top) and a session to it over loopback."""
    async with running_simulator("clean", seed=1, **overrides) as sim:
        session = ApiSession(
            sim.base_url,
            Credentials("sim-client-key", "sim-client-secret"),
            retry=retry,
            hooks=hooks,
            requests_per_second=1000.0,
            request_timeout=5.0,
        )
        async with session:
            yield sim, session
