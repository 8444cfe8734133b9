"""TLS against a real https simulator on loopback with a certificate authority made per test.

The CA (trustme) exists only for the test: the system's trust store knows nothing of it, so a
default session must refuse the server, and trusting it takes `ca_bundle` or SSL_CERT_FILE.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
import structlog

from harvester._exceptions import ConnectionFailed
from harvester.api import ApiSession, Credentials, ResearchApiClient, RetryPolicy
from harvester.query import parse_rest_query
from harvester.simulator.app import Simulator
from harvester.simulator.testing import running_simulator

pytestmark = pytest.mark.anyio

CREDS = Credentials("sim-client-key", "sim-client-secret")
QUERY = parse_rest_query(
    {"and": [{"operation": "EQ", "field_name": "region_code", "field_values": ["NL"]}]}
)
ONCE = RetryPolicy(attempts=1)


@pytest.fixture
async def https_sim(tls_server: ssl.SSLContext) -> AsyncIterator[Simulator]:
    async with running_simulator("clean", seed=5, tls=tls_server) as sim:
        assert sim.base_url.startswith("https://127.0.0.1:")
        yield sim


async def fetch(sim: Simulator, **kw: object) -> int:
    async with ApiSession(sim.base_url, CREDS, retry=ONCE, **kw) as session:  # type: ignore[arg-type]
        client = ResearchApiClient(session, confirm_empty=False)
        day = date(2023, 1, 2)
        return len(await client.query(QUERY, day, day, ("id", "create_time")))


async def test_an_unknown_authority_is_refused_by_default(https_sim: Simulator) -> None:
    with pytest.raises(ConnectionFailed) as info:
        await fetch(https_sim)
    assert info.value.url is not None and info.value.url.startswith(https_sim.base_url)
    assert "TLS certificate not trusted" in str(info.value) and info.value.connecting
    assert https_sim.stats.responses == {}  # not even the token request got through


async def test_ca_bundle_is_trusted_beside_the_system_store(
    https_sim: Simulator, ca_file: Path
) -> None:
    assert await fetch(https_sim, ca_bundle=ca_file) > 0


async def test_ssl_cert_file_is_honoured(
    https_sim: Simulator, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    assert await fetch(https_sim) > 0


async def test_verify_tls_false_reaches_the_connector_and_says_so_loudly(
    https_sim: Simulator,
) -> None:
    with structlog.testing.capture_logs() as logs:
        assert await fetch(https_sim, verify_tls=False) > 0
    (warning,) = [e for e in logs if e["event"] == "tls_verification_off"]
    assert warning["log_level"] == "warning" and warning["base_url"] == https_sim.base_url
