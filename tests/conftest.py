"""Shared fixtures. Async tests use anyio's pytest plugin on the asyncio backend (aiohttp)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import stamina
import structlog
import trustme

if TYPE_CHECKING:
    from tests._s3 import Bucket


@pytest.fixture(autouse=True)
def default_logging() -> Iterator[None]:
    """Every test starts from structlog's and stamina's defaults, and leaves them so. Both are
    configured per process, and the code under test configures them: `configure_logging` (the
    CLI, `run`) turns stamina's retry logging off, and `harvester.rqs.RQSClient`, in a process
    that did not configure structlog, drops every event below warning. Left in place, a later
    test that captures log events would see other events depending on which tests ran first."""
    structlog.reset_defaults()
    stamina.instrumentation.set_on_retry_hooks(None)
    yield
    structlog.reset_defaults()
    stamina.instrumentation.set_on_retry_hooks(None)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a fresh PostgreSQL database, dropped after the test."""
    from tests._postgres import fresh_database

    yield from fresh_database()


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A certificate authority made for the test run: no system trust store knows it."""
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    """The CA's certificate as a PEM file, as an institution's proxy CA is handed out."""
    path = tmp_path / "lab-proxy-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def tls_server(ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 signed by `ca` (for the simulator)."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    return server


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3-compatible server on loopback, for the whole session."""
    from tests._s3 import moto_server

    yield from moto_server()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """A fresh bucket, with the AWS environment pointing at the server."""
    from tests._s3 import new_bucket

    return new_bucket(s3_endpoint, monkeypatch)
