"""The one HTTP session every backend shares: token, retries, rate limit and the quota hooks.

Everything the API can do wrong on the wire (5xx, HTML or truncated bodies, resets, timeouts,
429s) is classified here into the error tree with a stable `kind`, retried here when a plain
retry can help, and logged here, so the clients above only see data or a typed verdict.
"""

from __future__ import annotations

import os
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import aiohttp
import anyio
import anyio.lowlevel
import orjson
import stamina
import structlog
from aiolimiter import AsyncLimiter

from harvester._credentials import Credentials, require_env
from harvester._exceptions import (
    RETRIED_BY_SESSION,
    ApiError,
    BadAnswer,
    ConfigError,
    ConnectionFailed,
    RateLimited,
    RequestTimeout,
    ServerError,
    TokenRejected,
    TokenUnavailable,
    TransientError,
    Unreachable,
)
from harvester.api._errors import decode_answer, decode_token

__all__ = [
    "ApiSession",
    "Credentials",
    "NoHooks",
    "RequestHooks",
    "RetryPolicy",
]

T = TypeVar("T")
log = structlog.get_logger("harvester.api")

TOKEN_PATH = "/v2/oauth/token/"
ENV_BASE_URL = "TIKTOK_API_BASE_URL"
#: Bodies at least this large are decoded in a worker thread by a `fast` decoder.
THREAD_BYTES = 256 * 1024


class RequestHooks(Protocol):
    """What the orchestrator plugs in to keep its quota ledger and statistics.

    `reserve` runs before every attempt the API counts against the daily quota (raise
    QuotaExhausted to stop before the request is sent); `settle` runs after that attempt,
    whatever its outcome. `on_error` sees every failed attempt's kind, `on_retry` every
    retry scheduled (with the delay chosen).
    """

    async def reserve(self, endpoint: str) -> None: ...

    def settle(self, endpoint: str, *, ok: bool, records: int) -> None: ...

    def on_retry(self, kind: str, attempt: int, delay: float) -> None: ...

    def on_error(self, kind: str) -> None: ...


class NoHooks:
    """The default: count nothing."""

    async def reserve(self, endpoint: str) -> None:
        return None

    def settle(self, endpoint: str, *, ok: bool, records: int) -> None:
        return None

    def on_retry(self, kind: str, attempt: int, delay: float) -> None:
        return None

    def on_error(self, kind: str) -> None:
        return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter; Retry-After wins when the API sends it.

    `wait_scale` multiplies every delay actually slept (hooks and logs see the unscaled
    delay): tests set it near zero and still assert the delay chosen.
    """

    attempts: int = 8
    wait_initial: float = 1.0
    wait_max: float = 60.0
    wait_jitter: float = 1.0
    wait_exp_base: float = 2.0
    max_retry_after: float = 900.0
    timeout: float | None = None
    wait_scale: float = 1.0

    def delay(self, exc: ApiError, attempt: int) -> float:
        base = self.wait_initial * self.wait_exp_base ** max(0, attempt - 1)
        backoff = min(self.wait_max, base + random.uniform(0, self.wait_jitter))
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            # The server's word is a floor: "Retry-After: 0" must not turn into a busy loop.
            return min(max(exc.retry_after, backoff), self.max_retry_after)
        return backoff


def tls_context(
    verify: bool = True, ca_bundle: str | os.PathLike[str] | None = None
) -> ssl.SSLContext | bool:
    """What the connector checks a server's certificate against.

    The system's trust store, which honours SSL_CERT_FILE and SSL_CERT_DIR, plus `ca_bundle`
    (an institution's proxy CA, say) when given; False turns verification off.
    """
    if not verify:
        return False
    context = ssl.create_default_context()
    if ca_bundle is not None:
        try:
            context.load_verify_locations(cafile=os.fspath(ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"api.ca_bundle: cannot load {os.fspath(ca_bundle)} ({exc.__class__.__name__}); "
                "give a PEM file of CA certificates"
            ) from None
    return context


def connection_failure(exc: BaseException) -> str:
    """What went wrong on the way to the API, in words, without request details."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert = exc.certificate_error
        why = getattr(cert, "verify_message", None) or type(cert).__name__
        return f"TLS certificate not trusted ({why}); see api.ca_bundle"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS handshake failed ({type(exc).__name__})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, socket.gaierror):
            return f"host name {exc.host} not resolved"
        why = os.strerror(os_error.errno) if os_error.errno else type(os_error).__name__
        return f"connection to {exc.host}:{exc.port} failed ({why.lower()})"
    return f"connection failed ({type(exc).__name__})"


class Reachability:
    """Whether the API has answered this session, and since when it has not: an outage.

    Shared by every call of the session, so one outage is one warning however many workers
    wait on it, a reminder each `remind_every` seconds, and one line when it is over.
    """

    def __init__(self, base_url: str, *, remind_every: float = 60.0) -> None:
        self.base_url = base_url
        self.remind_every = remind_every
        self.ever_answered = False
        self.down_since: float | None = None
        self._said_at = 0.0

    def answered(self) -> None:
        if self.down_since is not None:
            lasted = time.time() - self.down_since
            log.warning(
                "api_reachable_again",
                url=self.base_url,
                down_s=round(lasted, 1),
                message=f"API reachable again after {lasted:.0f} s",
            )
            self.down_since = None
        self.ever_answered = True

    def lost(self, exc: ConnectionFailed) -> bool:
        """True when `exc` is an outage to wait out: no connection can be made, and the API
        answered earlier in the run (before that, it is more likely a wrong URL). A connection
        reset mid-answer is the request's failure, bounded by its attempts."""
        if not (self.ever_answered and exc.connecting):
            return False
        now = time.time()
        if self.down_since is None:
            self.down_since = now
        elif now - self._said_at < self.remind_every:
            return True
        self._said_at = now
        since = time.strftime("%H:%M:%S UTC", time.gmtime(self.down_since))
        log.warning(
            "api_unreachable",
            url=self.base_url,
            since=since,
            error=exc.message,
            message=f"API unreachable since {since} ({exc.message}), retrying",
        )
        return True


class _Tokens:
    """Client-credentials token: fetched lazily, renewed before expiry, refreshed once on 401."""

    def __init__(self, session: ApiSession, refresh_fraction: float) -> None:
        self._session = session
        self._fraction = refresh_fraction
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = anyio.Lock()
        self.issued: list[str] = []  # every token seen, for redaction

    async def current(self) -> str:
        token = self._token
        if token is not None and self._session.clock() < self._renew_at:
            return token
        async with self._lock:
            if self._token is None or self._session.clock() >= self._renew_at:
                await self._fetch("initial" if self._token is None else "expiry")
            assert self._token is not None
            return self._token

    async def refresh(self, stale: str) -> None:
        """Replace `stale`, unless a concurrent caller already did."""
        async with self._lock:
            if self._token == stale:
                await self._fetch("rejected")

    async def _fetch(self, reason: str) -> None:
        token, expires_in = await self._session._request_token()
        self._token = token
        self.issued = [*self.issued[-3:], token]
        self._renew_at = self._session.clock() + expires_in * self._fraction
        log.info("token_refreshed", reason=reason, expires_in=expires_in)


class ApiSession:
    """One aiohttp session, one token, one rate limiter, shared by every client and task."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        requests_per_second: float = 5.0,
        request_timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        hooks: RequestHooks | None = None,
        refresh_fraction: float = 0.9,
        max_connections: int = 64,
        clock: Callable[[], float] = time.monotonic,
        verify_tls: bool = True,
        ca_bundle: str | os.PathLike[str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._tls = tls_context(verify_tls, ca_bundle)
        if not verify_tls:
            log.warning(
                "tls_verification_off",
                base_url=self.base_url,
                hint="anyone on the path can read the credentials; only for a local simulator",
            )
        self._credentials = credentials
        self.retry = retry or RetryPolicy()
        self.hooks: RequestHooks = hooks or NoHooks()
        self.clock = clock
        self.request_timeout = request_timeout
        self._max_connections = max_connections
        self._limiter = (
            AsyncLimiter(requests_per_second, 1.0)
            if requests_per_second >= 1
            else AsyncLimiter(1, 1.0 / requests_per_second)
        )
        self._tokens = _Tokens(self, refresh_fraction)
        self.reach = Reachability(self.base_url)
        self._http: aiohttp.ClientSession | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kw: Any) -> ApiSession:
        """Base URL and credentials from TIKTOK_API_BASE_URL / _CLIENT_KEY / _CLIENT_SECRET."""
        env = os.environ if environ is None else environ
        return cls(require_env(env, ENV_BASE_URL), Credentials.from_env(env), **kw)

    def __repr__(self) -> str:
        return (
            f"ApiSession(base_url={self.base_url!r}, client_key={self._credentials.client_key!r})"
        )

    async def __aenter__(self) -> Self:
        self._client()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.request_timeout),
                connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=self._tls),
            )
        return self._http

    def redact(self, text: str) -> str:
        """`text` without the client secret or any token this session has held."""
        for secret in (self._credentials.client_secret, *self._tokens.issued):
            if secret and secret in text:
                text = text.replace(secret, "[redacted]")
        return text

    async def post(
        self,
        endpoint: str,
        body: Mapping[str, Any],
        *,
        params: Mapping[str, str] | None = None,
        counted: bool = False,
        records_of: Callable[[dict[str, Any]], int] | None = None,
        attempts: int | None = None,
        give_up_5xx: int | None = None,
        fast: Callable[[bytes], dict[str, Any] | None] | None = None,
    ) -> dict[str, Any]:
        """POST a JSON body to a research endpoint and return the answer's `data`.

        `counted` says the API counts this call against the daily quota (hooks reserve and
        settle every attempt); `records_of` tells `settle` how many records the data holds;
        `attempts` lowers the policy's bound for a call whose caller has a cheaper way out;
        `give_up_5xx` ends the call after that many 5xx answers (a caller that splits a failing
        window), while every other transient failure keeps the whole policy; `fast` decodes a
        200 answer's body a cheaper way (a `PageDecoder`), or returns None to leave it to the
        general decoder.
        """
        payload = orjson.dumps(body)

        async def call() -> dict[str, Any]:
            token = await self._tokens.current()
            try:
                return await self._once(endpoint, payload, params, token, counted, records_of, fast)
            except TokenRejected:
                await self._tokens.refresh(token)
            # Once more with the new token. A token can be revoked or expire again within
            # moments (other workers, clock skew): a second rejection is retried with backoff.
            # Wrong credentials fail at the token endpoint, as AuthError.
            token = await self._tokens.current()
            return await self._once(endpoint, payload, params, token, counted, records_of, fast)

        return await self._retrying(endpoint, call, attempts, give_up_5xx)

    async def _once(
        self,
        endpoint: str,
        payload: bytes,
        params: Mapping[str, str] | None,
        token: str,
        counted: bool,
        records_of: Callable[[dict[str, Any]], int] | None,
        fast: Callable[[bytes], dict[str, Any] | None] | None = None,
    ) -> dict[str, Any]:
        # Every other await on the way may return without suspending (cached token, free rate
        # limiter): without these checks a cancelled caller would go on sending shielded calls.
        await anyio.lowlevel.checkpoint_if_cancelled()
        if counted:
            await self.hooks.reserve(endpoint)
        ok, records = False, 0
        try:
            await self._limiter.acquire()
            await anyio.lowlevel.checkpoint_if_cancelled()
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            # A counted call, once sent, is paid for: a stop (quota exit, signal) must not throw
            # its answer away, or the next run pays again for the same page or task. The shield
            # lasts one attempt at most (the session's request timeout); the caller checkpoints
            # the answer before its next await, where the cancellation lands.
            with anyio.CancelScope(shield=counted):
                status, answer_headers, raw = await self._send(
                    endpoint, data=payload, headers=headers, params=params
                )
                fast_data = None
                if fast is not None and status == 200:
                    # A page of records takes tens of milliseconds to parse: off the event
                    # loop (the parser releases the GIL), inside the shield (it is paid for).
                    if len(raw) >= THREAD_BYTES:
                        fast_data = await anyio.to_thread.run_sync(fast, raw)
                    else:
                        fast_data = fast(raw)
            data = (
                fast_data
                if fast_data is not None
                else decode_answer(status, answer_headers, raw, self.redact)
            )
            records = records_of(data) if records_of else 0
            ok = True
            return data
        except ApiError as exc:
            self.hooks.on_error(exc.kind)
            raise
        finally:
            if counted:
                self.hooks.settle(endpoint, ok=ok, records=records)

    async def _request_token(self) -> tuple[str, float]:
        form = {
            "client_key": self._credentials.client_key,
            "client_secret": self._credentials.client_secret,
            "grant_type": "client_credentials",
        }

        # Not retried on its own: it runs inside the retried request, so a failing token
        # endpoint costs the request's attempts and no more.
        try:
            status, headers, raw = await self._send(
                TOKEN_PATH, data=form, headers={"Cache-Control": "no-cache"}
            )
            return decode_token(status, headers, raw, self.redact)
        except ServerError as exc:
            # A token endpoint in trouble says nothing about the window being fetched: never
            # let its 5xx count towards splitting one.
            failure = TokenUnavailable(
                f"token endpoint failed: {exc.message}",
                status=exc.status,
                code=exc.code,
                log_id=exc.log_id,
            )
            self.hooks.on_error(failure.kind)
            raise failure from None
        except ApiError as exc:
            self.hooks.on_error(exc.kind)
            raise

    async def _send(
        self,
        path: str,
        *,
        data: bytes | Mapping[str, str],
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One POST; transport failures become typed transient errors without a cause chain
        (aiohttp's exceptions carry request details we do not want near a log line)."""
        url = self.base_url + path
        failure: TransientError
        try:
            async with self._client().post(url, data=data, headers=headers, params=params) as r:
                answer = r.status, r.headers, await r.read()
        except TimeoutError:
            failure = RequestTimeout(f"no answer within {self.request_timeout:g} s")
        except aiohttp.ClientPayloadError as exc:
            failure = BadAnswer(f"answer cut short ({type(exc).__name__})")
        except (aiohttp.ClientError, OSError) as exc:
            connecting = isinstance(exc, aiohttp.ClientConnectorError)
            failure = ConnectionFailed(connection_failure(exc), url=url, connecting=connecting)
        else:
            self.reach.answered()
            return answer
        raise failure

    def note_retry(self, endpoint: str, exc: ApiError, attempt: int, delay: float) -> None:
        """Log a retry and count it: here for the session's own retries, and for a client's
        (a rejected search id asked again)."""
        # Retries are the normal weather of this API: the JSON log and `status` count them;
        # only a request that finally fails is worth a warning on the console.
        log.info(
            "retry",
            endpoint=endpoint,
            kind=exc.kind,
            attempt=attempt,
            delay=round(delay, 3),
            status=exc.status,
            code=exc.code,
        )
        self.hooks.on_retry(exc.kind, attempt, delay)

    async def check_reachable(self, within: float = 15.0) -> None:
        """Fail fast when the API cannot be reached at all: a wrong base URL, a name that does
        not resolve, a certificate not trusted.

        Fetches a token (the API does not count it) and tries again for up to `within` seconds
        while the connection itself fails; raises `Unreachable` then. Anything else (an answer,
        even an error one, or a slow endpoint) leaves the verdict to the run's own retries;
        `AuthError` (wrong credentials) is raised as it is.
        """
        deadline = anyio.current_time() + within
        delay = 1.0
        failed: ConnectionFailed | None = None
        while (left := deadline - anyio.current_time()) > 0:
            with anyio.move_on_after(left):
                try:
                    await self._tokens.current()
                    return
                except ConnectionFailed as exc:
                    if not exc.connecting:
                        return  # something answers there, if badly: the run's retries decide
                    failed = exc
                except TransientError:
                    return
            if failed is None or anyio.current_time() + delay >= deadline:
                break  # no verdict in time (a slow endpoint is not an unreachable one)
            await anyio.sleep(delay)
            delay *= 2
        if failed is not None:
            raise Unreachable(
                f"cannot reach the API at {self.base_url}: {failed.message}; "
                "check api.base_url and the network",
                url=failed.url,
            )

    async def _retrying(
        self,
        endpoint: str,
        call: Callable[[], Awaitable[T]],
        attempts: int | None = None,
        give_up_5xx: int | None = None,
    ) -> T:
        policy = self.retry
        limit = policy.attempts if attempts is None else max(1, min(attempts, policy.attempts))
        attempt_no = failures = outage_waits = 0
        answers_5xx = 0

        def backoff(exc: Exception) -> bool | float:
            nonlocal answers_5xx, failures, outage_waits
            if not isinstance(exc, RETRIED_BY_SESSION):
                return False
            if isinstance(exc, ConnectionFailed) and self.reach.lost(exc):
                # The API answered this run before: an outage (network, VPN, the API itself),
                # waited out without spending the attempts meant for the request's own failures.
                outage_waits += 1
                delay = policy.delay(exc, outage_waits)
                self.hooks.on_retry(exc.kind, attempt_no, delay)
                return delay * policy.wait_scale
            failures += 1
            if failures >= limit:
                return False
            if isinstance(exc, ServerError):
                answers_5xx += 1
                if give_up_5xx is not None and answers_5xx >= give_up_5xx:
                    return False
            delay = policy.delay(exc, attempt_no)
            self.note_retry(endpoint, exc, attempt_no, delay)
            return delay * policy.wait_scale

        try:
            async for attempt in stamina.retry_context(
                on=backoff, attempts=None, timeout=policy.timeout
            ):
                attempt_no = attempt.num
                with attempt:
                    return await call()
        except ApiError as exc:
            log.warning(
                "request_failed",
                endpoint=endpoint,
                kind=exc.kind,
                status=exc.status,
                code=exc.code,
                attempts=attempt_no,
                error=self.redact(str(exc)),
            )
            raise
        raise AssertionError("unreachable: stamina either returns or raises")
