"""harvester: turn a study description into a complete, deduplicated Parquet dataset."""

from __future__ import annotations

from harvester._exceptions import (
    ApiError,
    AuthError,
    ConfigError,
    CredentialsError,
    HarvesterError,
    InvalidRequest,
    QueryError,
    QuotaExhausted,
    RateLimited,
    SearchIdInvalid,
    SinkError,
    StateError,
    StudyChangedError,
    TaskAnalysisFailed,
    TaskExpired,
    TaskNotCompleted,
    TaskNotFound,
    TooManyRunningTasks,
    TransientError,
    UserError,
)

__version__ = "0.1.0"

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
    "TaskAnalysisFailed",
    "TaskExpired",
    "TaskNotCompleted",
    "TaskNotFound",
    "TooManyRunningTasks",
    "TransientError",
    "UserError",
    "__version__",
]
