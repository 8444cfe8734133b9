"""Every error harvester raises, in families that decide what happens next.

    HarvesterError
    ├── UserError                  the user's to fix: exit 2, one line, no request made
    │   ├── ConfigError            a bad study file or option
    │   ├── QueryError             a query the API would reject (field, operator, value, limit)
    │   ├── CredentialsError       client key or secret missing from the environment
    │   └── StudyChangedError      the study differs from the one its state was planned for
    ├── ApiError                   an answer from the API, or none (status, code, log_id, kind)
    │   ├── TransientError         the same call may succeed later
    │   │   ├── ServerError        5xx / internal_error                          [session]
    │   │   ├── RequestTimeout     408, or no answer within the request timeout   [session]
    │   │   ├── ConnectionFailed   refused, reset, DNS or TLS failure            [session]
    │   │   ├── BadAnswer          HTML, truncated or shapeless body             [session]
    │   │   ├── RateLimited        429 short-term limit (may carry Retry-After)  [session]
    │   │   ├── TokenRejected      401 access_token_invalid: refreshed once      [session]
    │   │   ├── TokenUnavailable   the token endpoint failed (its 5xx)           [session]
    │   │   ├── TooManyRunningTasks  429 running-task cap                    [task runner]
    │   │   ├── TaskAnalysisFailed a task that failed server-side: create again [task runner]
    │   │   ├── SearchIdInvalid    400 "Search Id … is invalid or expired"   [REST client]
    │   │   └── Stalled            pages that stop making progress          [orchestrator]
    │   ├── QuotaExhausted         429 daily quota: the API's verdict, wait for 00:00 UTC
    │   │   └── QuotaSpent         the local ledger's verdict, before any request is sent
    │   ├── Unreachable            no connection at start: wrong URL, DNS, TLS (exit 1)
    │   ├── AuthError              401/invalid_client: wrong credentials or scope
    │   ├── InvalidRequest         400 invalid_params: the request itself is wrong
    │   ├── TaskNotFound           404 task_not_found: create the task again  [task runner]
    │   ├── TaskExpired            404 task_expired: create the task again    [task runner]
    │   ├── TaskNotCompleted       409 result asked before Completed
    │   ├── TaskCancelled          the task was cancelled (by `harvester cancel` or by hand)
    │   ├── TaskTimedOut           the task still ran when the poll policy's timeout ran out
    │   ├── TargetUnavailable      one enrichment target refused (private, deleted): its outcome
    │   └── SdkError               the pyrqs SDK raised something of its own
    ├── StateError                 the state store refuses (unreadable, corrupt, newer)
    │   └── StudyLocked            another run of the study is live: exit 99 at once ("skipped")
    └── SinkError                  the dataset cannot be written (disk full, permissions)

Who retries what, from the wire up:

- The HTTP session (`api/_http.py`) retries `RETRIED_BY_SESSION` with bounded backoff; a
  `TokenRejected` first gets the token refreshed and the call repeated at once.
- The clients retry what only they know how to: the task runner waits for a free task slot and
  creates a task again after `TaskAnalysisFailed`, `TaskNotFound` or `TaskExpired`; the REST
  client repeats a `SearchIdInvalid` page briefly, then restarts the window without it.
- The orchestrator sees the rest. Any `TransientError` that got through (retries spent,
  `Stalled`) costs the window a later retry, or a split for the public API; `QuotaExhausted`
  waits for the quota day or exits 75; `AuthError` ends the run; any other `ApiError` parks
  the window for `--retry-failed`.

`kind` is each class's stable short name for logs and `harvester status` ("5xx", "timeout").
Messages never carry a client secret or a token: the HTTP layer builds them from the API's
error code and message only.
"""

from __future__ import annotations

from harvester._exit import EXIT_LOCKED, EXIT_USER

__all__ = [
    "RETRIED_BY_SESSION",
    "ApiError",
    "AuthError",
    "BadAnswer",
    "ConfigError",
    "ConnectionFailed",
    "CredentialsError",
    "HarvesterError",
    "InvalidRequest",
    "QueryError",
    "QuotaExhausted",
    "QuotaSpent",
    "RateLimited",
    "RequestTimeout",
    "SdkError",
    "SearchIdInvalid",
    "ServerError",
    "SinkError",
    "Stalled",
    "StateError",
    "StudyChangedError",
    "StudyLocked",
    "TargetUnavailable",
    "TaskAnalysisFailed",
    "TaskCancelled",
    "TaskExpired",
    "TaskNotCompleted",
    "TaskNotFound",
    "TaskTimedOut",
    "TokenRejected",
    "TokenUnavailable",
    "TooManyRunningTasks",
    "TransientError",
    "Unreachable",
    "UserError",
]


class HarvesterError(Exception):
    """Base of everything harvester raises on purpose."""


class UserError(HarvesterError):
    """Bad input. The CLI prints the message on one line and exits 2."""

    exit_code = EXIT_USER


class ConfigError(UserError):
    pass


class QueryError(UserError):
    pass


class CredentialsError(UserError):
    pass


class StudyChangedError(UserError):
    pass


class ApiError(HarvesterError):
    """An error answer from the API (or no usable answer at all)."""

    #: Stable short name used in logs and in `harvester status` ("5xx", "timeout", ...).
    kind: str = "api_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        log_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.log_id = log_id

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"(HTTP {self.status}")
            parts[-1] += f", {self.code})" if self.code else ")"
        if self.log_id:
            parts.append(f"log_id={self.log_id}")
        return " ".join(parts)


class TransientError(ApiError):
    kind = "transient"


class ServerError(TransientError):
    kind = "5xx"


class RequestTimeout(TransientError):
    kind = "timeout"


class ConnectionFailed(TransientError):
    """No answer at all: the connection was refused or reset, the name did not resolve, or the
    TLS handshake failed. `url` is where harvester tried to go; `connecting` says it failed
    before a connection existed (refused, DNS, TLS), not after (a reset mid-answer)."""

    kind = "connection"

    def __init__(
        self, message: str, *, url: str | None = None, connecting: bool = False, **kw: object
    ) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.url = url
        self.connecting = connecting


class BadAnswer(TransientError):
    kind = "bad_body"


class TokenRejected(TransientError):
    kind = "token_rejected"


class TokenUnavailable(TransientError):
    """The token endpoint answered 5xx: not the window's fault, so it never splits one."""

    kind = "token_unavailable"


class Stalled(TransientError):
    kind = "stalled"


class RateLimited(TransientError):
    kind = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class TooManyRunningTasks(TransientError):
    kind = "too_many_running_tasks"


class SearchIdInvalid(TransientError):
    kind = "search_id_invalid"


class TaskAnalysisFailed(TransientError):
    kind = "analysis_failed"


class QuotaExhausted(ApiError):
    kind = "quota_exhausted"


class QuotaSpent(QuotaExhausted):
    """The local ledger's own count says the day's quota is spent: nothing was sent."""

    kind = "quota_local"


class Unreachable(ApiError):
    """The API could not be reached at all when the run started (see ApiSession.check_reachable);
    mid-run, the same failures are an outage the session waits out."""

    kind = "unreachable"

    def __init__(self, message: str, *, url: str | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.url = url


class AuthError(ApiError):
    kind = "auth"


class InvalidRequest(ApiError):
    kind = "invalid_params"


class TaskNotFound(ApiError):
    kind = "task_not_found"


class TaskExpired(ApiError):
    kind = "task_expired"


class TaskNotCompleted(ApiError):
    kind = "task_not_completed"


class TaskCancelled(ApiError):
    kind = "cancelled"


class TaskTimedOut(ApiError):
    kind = "task_timeout"


class TargetUnavailable(ApiError):
    """The API refuses this one target (a private, deleted or under-18 account, a deleted video
    or playlist): its outcome, not the run's failure. `kind` is the verdict."""

    kind = "target_unavailable"

    def __init__(self, message: str, *, verdict: str | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        if verdict is not None:
            self.kind = verdict


class SdkError(ApiError):
    kind = "sdk"


#: What the HTTP session retries itself, with backoff; everything else goes up to the client.
RETRIED_BY_SESSION: tuple[type[ApiError], ...] = (
    ServerError,
    RequestTimeout,
    ConnectionFailed,
    BadAnswer,
    RateLimited,
    TokenRejected,
    TokenUnavailable,
)


class StateError(HarvesterError):
    pass


class StudyLocked(StateError):
    """Another live `harvester run` of the study holds its run lock. This run harvests nothing
    and exits 99 at once: a scheduler that started two overlapping runs counts it as skipped."""

    exit_code = EXIT_LOCKED


class SinkError(HarvesterError):
    pass
