"""A fresh PostgreSQL database per test on the local server (127.0.0.1:5432, user postgres).

CI starts the server; a test that needs it is skipped, saying why, only when nothing answers
on the port at all (a machine without PostgreSQL). Any other failure is a test failure.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import psycopg
import pytest

HOST, PORT, USER = "127.0.0.1", 5432, "postgres"
ADMIN_URL = f"postgresql://{USER}@{HOST}:{PORT}/postgres"


def _reachable() -> bool:
    try:
        with socket.create_connection((HOST, PORT), timeout=2):
            return True
    except OSError:
        return False


def fresh_database() -> Iterator[str]:
    """Create a database, yield its URL, drop it (and its connections) afterwards."""
    if not _reachable():
        pytest.skip(f"no PostgreSQL server answers on {HOST}:{PORT} (CI starts one)")
    name = f"harvester_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{USER}@{HOST}:{PORT}/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
