"""The API layer: shard in, clean deduplicated pages out.

One `ApiSession` (token, retries, rate limit, quota hooks) is shared by the backends:
`ResearchApiClient` (public Research API), `RqsClient` (Research Query Service over HTTP) and
`PyrqsBackend` (a real pyrqs SDK client in worker threads). All three satisfy `Backend`.
"""

from __future__ import annotations

from harvester.api._enrich import EnrichClient, TargetPage, TargetUnavailable
from harvester.api._enrich_rqs import BatchDone, RqsEnrichClient
from harvester.api._http import ApiSession, Credentials, NoHooks, RequestHooks, RetryPolicy
from harvester.api._tasks import PollPolicy, TaskOptions, TaskRunner
from harvester.api.backend import Backend
from harvester.api.pyrqs_backend import PyrqsBackend, SdkClient
from harvester.api.research import ResearchApiClient
from harvester.api.rqs_client import RqsClient
from harvester.api.types import Page, Record, Resume, TaskStatus

__all__ = [
    "ApiSession",
    "Backend",
    "BatchDone",
    "Credentials",
    "EnrichClient",
    "NoHooks",
    "Page",
    "PollPolicy",
    "PyrqsBackend",
    "Record",
    "RequestHooks",
    "ResearchApiClient",
    "Resume",
    "RetryPolicy",
    "RqsClient",
    "RqsEnrichClient",
    "SdkClient",
    "TargetPage",
    "TargetUnavailable",
    "TaskOptions",
    "TaskRunner",
    "TaskStatus",
]
