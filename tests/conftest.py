"""Shared fixtures. Async tests use anyio's pytest plugin on the asyncio backend (aiohttp)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a fresh PostgreSQL database, dropped after the test."""
    from tests._postgres import fresh_database

    yield from fresh_database()
