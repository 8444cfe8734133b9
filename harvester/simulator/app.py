"""The simulator: one aiohttp application serving the public Research API and the RQS binding.

`Simulator` owns every piece of state (clock, corpus, quota ledger, tokens, searches, tasks,
faults) so that tests can look inside it; `research` wraps each research endpoint in what the
real service does before answering: latency, authentication, the short-term limit, the daily
quota and the seeded server faults, in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import ssl
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import structlog
from aiohttp import web

from harvester.query import RestQuery, SeedQuery, parse_rest_query, parse_seed_query
from harvester.simulator import control, enrich, rest, rqs
from harvester.simulator.clock import Clock
from harvester.simulator.config import SimulatorConfig
from harvester.simulator.corpus import Corpus
from harvester.simulator.faults import FaultInjector
from harvester.simulator.ledger import QuotaLedger, RateWindow, Stats
from harvester.simulator.responses import error, html, json_response, oauth_error

__all__ = ["Simulator", "run_forever", "serve"]

log = structlog.get_logger("harvester.simulator")

Handler = Callable[[web.Request], Awaitable[web.Response]]
TEST_STAGE_DAILY_RECORDS = 5_000
_500_BODIES = (
    ("json", "Something went wrong. Please try again later."),
    ("json", "Server Internal Error"),
    ("text", "Server Internal Error"),
)


class Simulator:
    """Both APIs over one seeded corpus. Start with `start()` or `async with`."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config = config or SimulatorConfig()
        self.clock = Clock(config.clock_start)
        self.corpus = Corpus(
            config.seed,
            videos_per_day=config.videos_per_day,
            start=config.start,
            end=config.end,
            cache_days=config.cache_days,
            cache_records=config.cache_records,
            lag=bool(config.indexing_lag),
            now=self.clock.now,
        )
        self.stats = Stats()
        daily_records = config.daily_records
        if config.stage == "test":
            daily_records = min(daily_records, TEST_STAGE_DAILY_RECORDS)
        self.ledger = QuotaLedger(
            self.clock, config.daily_requests, daily_records, config.quota_grace
        )
        #: The followers/following lists' own daily pool (20,000 calls, 2M records).
        self.follow_ledger = QuotaLedger(
            self.clock,
            config.follow_daily_requests,
            config.follow_daily_records,
            config.quota_grace,
        )
        self.rate = RateWindow(self.clock, config.rate_limit_per_minute)
        self.faults = FaultInjector(config.seed, config.faults, self.stats.faults)
        self.rng = random.Random(f"simulator:{config.seed}")
        self._latency_rng = random.Random(f"latency:{config.seed}")
        self.tokens: dict[str, float] = {}
        self.searches = rest.SearchCache(self)
        self.tasks = rqs.TaskStore(self)
        self.enrich = enrich.EnrichCorpus(self)
        self._log_ids = 0
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # ------------------------------------------------------------------ lifecycle

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v2/oauth/token/", self._token)
        app.router.add_post(
            "/v2/research/video/query/", self.research("rest.video_query", rest.video_query)
        )
        for verb, counted in (("create", True), ("status", False), ("result", True)):
            handler = getattr(rqs, verb)
            app.router.add_post(
                f"/v2/research/query_task/{verb}/",
                self.research(f"rqs.{verb}", handler, counted=counted),
            )
        app.router.add_post(
            "/v2/research/query_task/cancel/",
            self.research("rqs.cancel", rqs.cancel, counted=False),
        )
        enrich.add_routes(app, self)
        control.add_routes(app, self)
        return app

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, tls: ssl.SSLContext | None = None
    ) -> str:
        """Listen on `host:port` (0: any free port) and return the base URL; `tls` serves
        https with that context's certificate (the TLS tests)."""
        runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=tls)
        await site.start()
        self._runner = runner
        bound = runner.addresses[0]
        self.base_url = f"{'https' if tls else 'http'}://{host}:{bound[1]}"
        log.info(
            "simulator.started",
            url=self.base_url,
            seed=self.config.seed,
            profile=self.config.profile,
        )
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            log.info("simulator.stopped", url=self.base_url)

    async def __aenter__(self) -> Simulator:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ helpers

    def log_id(self) -> str:
        self._log_ids += 1
        stamp = datetime.fromtimestamp(self.clock.now(), UTC).strftime("%Y%m%d%H%M%S")
        return f"{stamp}{self.config.seed % 1000:03d}{self._log_ids:012X}"

    def new_id(self) -> int:
        """A 19-digit id made the way TikTok makes them: time in the high bits."""
        return int(self.clock.now()) << 32 | self.rng.getrandbits(32)

    def issue_token(self) -> str:
        token = "clt." + "".join(f"{self.rng.getrandbits(32):08x}" for _ in range(5))
        self.tokens[token] = self.clock.now() + self.config.token_ttl
        self.stats.tokens_issued += 1
        return token

    def auth_headers(self) -> dict[str, str]:
        """Headers with a fresh token: a shortcut for tests that are not about auth."""
        return {"Authorization": f"Bearer {self.issue_token()}"}

    def count_records(self, n: int) -> None:
        self.ledger.count_records(n)
        self.stats.records_delivered += n

    def set_faults(self, **rates: Any) -> None:
        """Change fault rates at run time (unknown names raise TypeError)."""
        self.faults.configure(self.faults.config.replace(**rates))

    def oracle(
        self,
        query: SeedQuery | RestQuery | list[Any] | Mapping[str, Any],
        start: int,
        end: int,
        *,
        as_of: float | None = None,
    ) -> set[int]:
        """The ids that truly match `query` with create_time in [start, end): the ground truth
        (with the indexing lag on: what the index holds at `as_of`, now by default)."""
        if isinstance(query, list):
            query = parse_seed_query(query)
        elif isinstance(query, Mapping):
            query = parse_rest_query(query)
        if isinstance(query, SeedQuery):
            lo, hi = query.time_bounds()
            start = start if lo is None else max(start, lo)
            end = end if hi is None else min(end, hi)
        if end <= start:
            return set()
        matches = query.matches
        return {v["id"] for v in self.corpus.videos(start, end, as_of=as_of) if matches(v)}

    # ------------------------------------------------------------------ the gate

    def research(self, endpoint: str, handler: Callable[..., Awaitable[web.Response]], *,
                 counted: bool = True, ledger: QuotaLedger | None = None) -> Handler:  # fmt: skip
        """Wrap `handler(sim, request)` in latency, auth, limits, quota and server faults;
        `ledger` is the daily pool the endpoint draws from (the research pool by default)."""

        async def route(request: web.Request) -> web.Response:
            resp = await self._gate(request, endpoint, handler, counted, ledger or self.ledger)
            self.stats.response(endpoint, resp.status)
            return resp

        return route

    async def _gate(
        self,
        request: web.Request,
        endpoint: str,
        handler: Callable[..., Awaitable[web.Response]],
        counted: bool,
        ledger: QuotaLedger,
    ) -> web.Response:
        cfg = self.config
        if cfg.latency > 0:
            await asyncio.sleep(cfg.latency * (0.8 + 0.4 * self._latency_rng.random()))
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        expires = self.tokens.get(token)
        if expires is None or expires <= self.clock.now():
            msg = "The access token is invalid or not found in the request."
            return error(401, "access_token_invalid", msg, self.log_id())
        wait = self.rate.admit()
        if wait is not None:
            return error(
                429,
                "rate_limit_exceeded",
                "rate limit exceeded",
                self.log_id(),
                headers={"Retry-After": str(int(wait))},
            )
        if counted:
            if ledger.check().exhausted is not None:
                # The public API's documented code; the RQS binding documents its own.
                code = (
                    "daily_quota_limit_exceeded"
                    if endpoint.startswith("rest.")
                    else ("daily_quota_exceeded")
                )
                return error(429, code, "daily quota exceeded", self.log_id())
            ledger.count_request()
        fault = self.faults.server_fault(endpoint)
        if fault == "slow_response":
            await asyncio.sleep(self.faults.config.slow_delay)
        elif fault is not None:
            return await self._server_fault(request, fault, token)
        try:
            resp = await handler(self, request)
        except ConnectionResetError:
            # The client gave up (a slow answer outlived its timeout): nobody is listening.
            return web.Response(status=499)
        if resp.status == 200 and self.faults.fires("truncated_body"):
            self.faults.note("truncated_body", endpoint)
            body = resp.body
            if isinstance(body, bytes):
                return web.Response(body=body[: len(body) // 2], content_type="application/json")
        return resp

    async def _server_fault(self, request: web.Request, fault: str, token: str) -> web.Response:
        if fault == "connection_reset":
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        if fault == "rate_limited":
            return error(
                429,
                "rate_limit_exceeded",
                "rate limit exceeded",
                self.log_id(),
                headers={"Retry-After": "1"},
            )
        if fault == "token_expiry":
            self.tokens.pop(token, None)
            return error(401, "access_token_invalid", "access token expired", self.log_id())
        if fault == "gateway_timeout":
            await asyncio.sleep(self.faults.config.gateway_delay)
            return html(504, "Gateway Time-out")
        if fault == "empty_body":
            return web.Response(status=self.faults.rng("empty_body").choice((502, 503)))
        kind, message = self.faults.rng("http_500").choice(_500_BODIES)
        if kind == "text":
            return web.Response(status=500, text=message)
        return error(500, "internal_error", message, self.log_id())

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        cfg = self.config
        if form.get("grant_type") != "client_credentials":
            resp = oauth_error(
                400,
                "unsupported_grant_type",
                "grant_type must be client_credentials",
                self.log_id(),
            )
        elif (
            form.get("client_key") != cfg.client_key
            or form.get("client_secret") != cfg.client_secret
        ):
            resp = oauth_error(
                401, "invalid_client", "Client key or secret is incorrect.", self.log_id()
            )
        else:
            token = self.issue_token()
            resp = json_response(
                {"access_token": token, "expires_in": int(cfg.token_ttl), "token_type": "Bearer"}
            )
        self.stats.response("oauth.token", resp.status)
        return resp


async def serve(
    config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> Simulator:
    """A started simulator; the caller closes it (or uses it as an async context manager)."""
    sim = Simulator(config)
    await sim.start(host, port)
    return sim


def run_forever(
    config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> None:
    """Serve until SIGINT or SIGTERM; prints the base URL line first (for subprocess users)."""

    async def main() -> None:
        sim = await serve(config, host, port)
        print(f"simulator listening on {sim.base_url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await sim.close()

    asyncio.run(main())
