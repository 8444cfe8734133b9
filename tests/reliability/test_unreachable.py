"""An API that cannot be reached: at start a wrong URL fails fast; mid-run an outage is waited
out, said on the console, and costs no split.

The outage is real: the run talks to the simulator through a loopback TCP proxy that the test
closes (its listening socket and every connection: connections are refused) and opens again on
the same port.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import anyio
import anyio.abc
import pytest

from harvester.orchestrator import status_report
from harvester.simulator.testing import running_simulator
from tests.orchestrator.conftest import SIM, assert_equals_oracle, cli, make_study, oracle

pytestmark = pytest.mark.anyio


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("closed-port", "connection to 127.0.0.1:{port} failed (connection refused)"),
        ("https://no-such-host.invalid", "host name no-such-host.invalid not resolved"),
        ("tls-to-plain-http", "TLS"),
    ],
    ids=["refused", "dns", "tls"],
)
async def test_an_unreachable_api_at_start_exits_1_with_one_line(
    tmp_path: Path, url: str, said: str
) -> None:
    async with running_simulator("clean", **SIM) as sim:
        port = _free_port()
        base = {
            "closed-port": f"http://127.0.0.1:{port}",
            "tls-to-plain-http": sim.base_url.replace("http://", "https://"),
        }.get(url, url)
        make_study(tmp_path, base, source="research-api", days=2, window=2)
        started = time.monotonic()
        done = await anyio.to_thread.run_sync(
            lambda: cli("run", str(tmp_path / "study.toml"), "--no-progress", timeout=60)
        )
        took = time.monotonic() - started
        assert sim.stats.responses == {} or url == "tls-to-plain-http"
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("harvester: error")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"cannot reach the API at {base}: " in errors[0]
    assert said.format(port=port) in errors[0], errors[0]
    assert took < 20, f"took {took:.1f} s to give up"


class _Proxy:
    """Forwards loopback connections to `target`; `cut` makes the port refuse for a while."""

    def __init__(self, target: tuple[str, int], tg: anyio.abc.TaskGroup) -> None:
        self.target, self.tg = target, tg
        self.port = 0
        self.posts = 0
        #: Set once `wanted` research requests went through.
        self.wanted, self.reached = 2, anyio.Event()
        self._scope = anyio.CancelScope()

    async def open(self) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=self.port)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        self._scope = anyio.CancelScope()
        self.tg.start_soon(self._serve, listener, self._scope)

    async def _serve(
        self, listener: anyio.abc.Listener[anyio.abc.SocketStream], scope: anyio.CancelScope
    ) -> None:
        with scope:
            async with listener:
                await listener.serve(self._handle)

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        async with client:
            try:
                upstream = await anyio.connect_tcp(*self.target)
            except OSError:
                return
            async with upstream, anyio.create_task_group() as tg:
                tg.start_soon(self._pipe, client, upstream, True)
                tg.start_soon(self._pipe, upstream, client, False)

    async def _pipe(
        self, src: anyio.abc.SocketStream, dst: anyio.abc.SocketStream, requests: bool
    ) -> None:
        with suppress(anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            async for chunk in src:
                if requests:
                    self.posts += chunk.count(b"POST /v2/research/")
                    if self.posts >= self.wanted:
                        self.reached.set()
                await dst.send(chunk)
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await dst.send_eof()

    async def cut(self, seconds: float) -> None:
        """Close the listening socket and every connection, then listen again."""
        self._scope.cancel()
        await anyio.sleep(seconds)
        await self.open()


@asynccontextmanager
async def proxy_to(base_url: str) -> AsyncIterator[_Proxy]:
    host, port = base_url.removeprefix("http://").split(":")
    async with anyio.create_task_group() as tg:
        proxy = _Proxy((host, int(port)), tg)
        await proxy.open()
        yield proxy
        tg.cancel_scope.cancel()


@pytest.mark.slow
async def test_an_outage_mid_run_is_waited_out_said_and_costs_no_split(tmp_path: Path) -> None:
    async with (
        running_simulator("clean", **{**SIM, "latency": 0.02}) as sim,
        proxy_to(sim.base_url) as proxy,
    ):
        study = make_study(
            tmp_path, f"http://127.0.0.1:{proxy.port}", source="research-api", days=6, window=3
        )
        outcome: list[subprocess.CompletedProcess[str]] = []

        async def harvest() -> None:
            outcome.append(
                await anyio.to_thread.run_sync(
                    lambda: cli("run", str(tmp_path / "study.toml"), "--no-progress", timeout=120)
                )
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(harvest)
            with anyio.fail_after(60):
                await proxy.reached.wait()  # some pages are in: the API answered this run
            await proxy.cut(4.0)
        expected = oracle(sim, study)
    (done,) = outcome
    assert done.returncode == 0, done.stderr
    # Said on the console (no live display), once for the outage and once when it is over.
    lines = done.stderr.splitlines()
    down = [x for x in lines if x.startswith("warning: API unreachable since ")]
    assert len(down) == 1 and down[0].endswith(", retrying"), done.stderr
    assert "connection refused" in down[0]
    assert any(x.startswith("warning: API reachable again after ") for x in lines), done.stderr
    status = status_report(study)
    assert status["shards"].get("split", 0) == 0 and not status["shards"].get("parked")
    assert_equals_oracle(study, expected)
