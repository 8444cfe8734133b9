"""Connecting a study to its API: the session its `[api]` table describes, and the backend its
source names (the public Research API, RQS over the HTTP binding, or TikTok's pyrqs SDK).

The run, its enrichments and `harvester cancel` all connect through here, so the address, the
TLS trust, the pace and the retries are the study's wherever a request is sent from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import anyio

from harvester._exceptions import AuthError, ConfigError, HarvesterError
from harvester.api import (
    ApiSession,
    Backend,
    PollPolicy,
    PyrqsBackend,
    RequestHooks,
    ResearchApiClient,
    RetryPolicy,
    RqsClient,
    TaskOptions,
)
from harvester.config import Credentials, Study
from harvester.plan.sample import sample_plan

__all__ = [
    "PAGES_IN_MEMORY",
    "SPLIT_AFTER_5XX",
    "api_session",
    "credentials_refused",
    "make_backend",
    "reachable_session",
    "sdk_client",
]

#: 5xx answers to one call over a multi-day window before the window is split. One: the 500s
#: of a long window are mostly the window's (it matches many videos), every failed call costs a
#: request of the day's quota, and a split costs at most a page more (`make bench`, flaky).
SPLIT_AFTER_5XX = 1
#: RQS result pages (up to 10,000 records, tens of MB decoded) held at once by the whole run.
PAGES_IN_MEMORY = 2


def sdk_client(study: Study) -> Any:
    """TikTok's own `pyrqs.rqs.RQSClient`, for source = "pyrqs" (it exists only in the VCE)."""
    try:
        from pyrqs import rqs  # type: ignore[import-not-found]
    except ImportError:
        raise ConfigError(
            f'{study.config_path.name}: study.source: "pyrqs" needs TikTok\'s pyrqs SDK, which '
            "installs only inside TikTok's Virtual Compute Environment; run there, or use "
            'source = "rqs" with `harvester simulate` or a gateway'
        ) from None
    return rqs.RQSClient()


def api_session(
    study: Study,
    credentials: Credentials,
    *,
    retry: RetryPolicy | None = None,
    hooks: RequestHooks | None = None,
) -> ApiSession:
    """A session with the study's address, TLS trust, pace and timeout; `retry` overrides the
    study's retry policy."""
    api = study.api
    # Jitter scales with the first wait: a study that asks for short waits gets them.
    retry = retry or RetryPolicy(
        attempts=api.max_attempts,
        wait_initial=api.retry_wait_s,
        wait_jitter=api.retry_wait_s,
        wait_max=api.retry_wait_max_s,
    )
    return ApiSession(
        api.base_url,
        credentials,
        requests_per_second=api.requests_per_second,
        request_timeout=api.timeout_s,
        retry=retry,
        hooks=hooks,
        verify_tls=api.verify_tls,
        ca_bundle=api.ca_bundle,
    )


@asynccontextmanager
async def reachable_session(
    study: Study,
    credentials: Credentials,
    *,
    retry: RetryPolicy | None = None,
    hooks: RequestHooks | None = None,
) -> AsyncIterator[ApiSession]:
    """`api_session`, open, once the API has answered: a wrong base URL, DNS or TLS is one
    line and exit 1 now, not minutes of retries."""
    async with api_session(study, credentials, retry=retry, hooks=hooks) as session:
        if study.source != "pyrqs":  # the SDK makes its own connections
            try:
                await session.check_reachable()
            except AuthError as exc:
                raise credentials_refused(study, exc) from None
        yield session


def credentials_refused(study: Study, exc: AuthError) -> HarvesterError:
    api = study.api
    return HarvesterError(
        f"the API refused the credentials ({exc}); check {api.client_key_env} "
        f"and {api.client_secret_env}"
    )


def make_backend(
    study: Study, session: ApiSession, *, poll: PollPolicy | None = None, sdk: Any = None
) -> Backend[Any]:
    """The backend of the study's source over `session`. `poll` overrides the RQS poll policy
    (left without a `rate`, it gets half the study's requests per second); `sdk` stands in for
    TikTok's SDK client."""
    if study.source == "research-api":
        return ResearchApiClient(
            session,
            end_date_inclusive=study.api.end_date_inclusive,
            # A fresh search id the API rejects is waited for (users of every client see
            # it accepted seconds later) before its window restarts.
            search_id_wait=study.api.retry_wait_s,
            search_id_budget=study.api.search_id_wait_s,
            # The orchestrator splits a multi-day window the server fails (5xx): give up
            # on it after SPLIT_AFTER_5XX such answers, not after the whole policy.
            split_after_5xx=SPLIT_AFTER_5XX,
        )
    options = _task_options(study, poll)
    if study.source == "rqs":
        # Two result pages in memory at once: one being normalised, the next on the wire;
        # each decoded straight into Arrow (a quarter of the CPU and memory of dicts).
        return RqsClient(
            session, page_slots=anyio.CapacityLimiter(PAGES_IN_MEMORY), arrow=True, **options
        )
    limiter = anyio.CapacityLimiter(study.api.max_concurrency)
    return PyrqsBackend(sdk or sdk_client(study), limiter, hooks=session.hooks, **options)


def _task_options(study: Study, poll: PollPolicy | None) -> TaskOptions:
    # Status polls get half the study's request rate: the creates and result pages that keep
    # the task slots busy and the data flowing must not queue behind them.
    poll = poll or PollPolicy()
    if poll.rate is None:
        poll = replace(poll, rate=study.api.requests_per_second / 2)
    sample = sample_plan(study)
    return TaskOptions(
        # Test stage: every task gets the day's budget spread over the windows.
        limit=sample.limit_per_window if sample else study.limit,
        stage=study.stage,
        # max_concurrency caps the tasks in flight (created, not yet seen finished); a leaf
        # that is paging results or writing files gives its slot to the next task.
        task_slots=anyio.CapacityLimiter(study.api.max_concurrency),
        poll=poll,
    )
