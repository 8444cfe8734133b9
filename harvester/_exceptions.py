"""Every error harvester raises, in three families that decide what happens next.

    HarvesterError
    ├── UserError                  the user's to fix: exit 2, one line, no request made
    │   ├── ConfigError            a bad study file or option
    │   ├── QueryError             a query the API would reject (field, operator, value, limit)
    │   ├── CredentialsError       client key or secret missing from the environment
    │   └── StudyChangedError      the study differs from the one its state was planned for
    ├── ApiError                   an answer from the API (carries status, code, log_id)
    │   ├── TransientError         retry with backoff; the same call may succeed later
    │   │   ├── RateLimited        429 short-term limit (may carry Retry-After)
    │   │   ├── TooManyRunningTasks  429 running-task cap: wait for a task to finish
    │   │   ├── SearchIdInvalid    400 "Search Id … is invalid or expired" / bad cursor
    │   │   └── TaskAnalysisFailed a task that failed server-side; re-create it
    │   ├── QuotaExhausted         429 daily quota: the API's verdict, wait for 00:00 UTC
    │   ├── AuthError              401/invalid_client: wrong credentials or scope
    │   ├── InvalidRequest         400 invalid_params: the request itself is wrong
    │   ├── TaskNotFound           404 task_not_found
    │   ├── TaskExpired            404 task_expired: create the task again
    │   └── TaskNotCompleted       409 result asked before Completed
    ├── StateError                 the state store refuses (unreadable, corrupt, newer)
    │   └── StudyLocked            another run of the study is live: exit 99 at once ("skipped")
    └── SinkError                  the dataset cannot be written (disk full, permissions)

Messages never carry a client secret or a token: the HTTP layer builds them from the API's
error code and message only.
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "AuthError",
    "ConfigError",
    "CredentialsError",
    "HarvesterError",
    "InvalidRequest",
    "QueryError",
    "QuotaExhausted",
    "RateLimited",
    "SearchIdInvalid",
    "SinkError",
    "StateError",
    "StudyChangedError",
    "StudyLocked",
    "TaskAnalysisFailed",
    "TaskExpired",
    "TaskNotCompleted",
    "TaskNotFound",
    "TooManyRunningTasks",
    "TransientError",
    "UserError",
]


class HarvesterError(Exception):
    """Base of everything harvester raises on purpose."""


class UserError(HarvesterError):
    """Bad input. The CLI prints the message on one line and exits 2."""

    exit_code = 2


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
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.log_id = log_id
        if kind is not None:
            self.kind = kind

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


class StateError(HarvesterError):
    pass


class StudyLocked(StateError):
    """Another live `harvester run` of the study holds its run lock. This run harvests nothing
    and exits 99 at once: a scheduler that started two overlapping runs counts it as skipped."""

    exit_code = 99


class SinkError(HarvesterError):
    pass
