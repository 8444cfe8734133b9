"""harvester: turn a study description into a complete, deduplicated Parquet dataset.

Import from here, not from the private modules::

    from harvester import load_study, resolve_credentials, harvest, RunOptions
    from harvester import rqs                      # drop-in for TikTok's pyrqs SDK
    from harvester.simulator import running_simulator
"""

from __future__ import annotations

import typing as _typing

from harvester._exceptions import (
    ApiError,
    AuthError,
    BadAnswer,
    ConfigError,
    ConnectionFailed,
    CredentialsError,
    HarvesterError,
    InvalidRequest,
    QueryError,
    QuotaExhausted,
    QuotaSpent,
    RateLimited,
    RequestTimeout,
    SdkError,
    SearchIdInvalid,
    ServerError,
    SinkError,
    Stalled,
    StateError,
    StudyChangedError,
    StudyLocked,
    TargetUnavailable,
    TaskAnalysisFailed,
    TaskCancelled,
    TaskExpired,
    TaskNotCompleted,
    TaskNotFound,
    TaskTimedOut,
    TokenRejected,
    TokenUnavailable,
    TooManyRunningTasks,
    TransientError,
    Unreachable,
    UserError,
)
from harvester._version import __version__
from harvester.config import Credentials, Study, load_study, loads_study, resolve_credentials

if _typing.TYPE_CHECKING:
    from harvester.orchestrator import (
        RunOptions,
        harvest,
        plan_report,
        status_report,
        verify_study,
    )

#: The run's entry points load the HTTP client, Arrow and logging: only when first asked for,
#: so that `import harvester` (and `harvester plan` / `status`) stay quick.
_LAZY = frozenset({"RunOptions", "harvest", "plan_report", "status_report", "verify_study"})


def __getattr__(name: str) -> _typing.Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from harvester import orchestrator

    value = getattr(orchestrator, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


__all__ = [
    "ApiError",
    "AuthError",
    "BadAnswer",
    "ConfigError",
    "ConnectionFailed",
    "Credentials",
    "CredentialsError",
    "HarvesterError",
    "InvalidRequest",
    "QueryError",
    "QuotaExhausted",
    "QuotaSpent",
    "RateLimited",
    "RequestTimeout",
    "RunOptions",
    "SdkError",
    "SearchIdInvalid",
    "ServerError",
    "SinkError",
    "Stalled",
    "StateError",
    "Study",
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
    "__version__",
    "harvest",
    "load_study",
    "loads_study",
    "plan_report",
    "resolve_credentials",
    "status_report",
    "verify_study",
]
