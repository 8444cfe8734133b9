"""harvester: turn a study description into a complete, deduplicated Parquet dataset.

Import from here, not from the private modules::

    from harvester import load_study, resolve_credentials, harvest, RunOptions
    from harvester import rqs                      # drop-in for TikTok's pyrqs SDK
    from harvester.simulator import running_simulator
"""

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
from harvester._version import __version__
from harvester.config import Credentials, Study, load_study, loads_study, resolve_credentials
from harvester.orchestrator import (
    RunOptions,
    harvest,
    plan_report,
    status_report,
    verify_study,
)

__all__ = [
    "ApiError",
    "AuthError",
    "ConfigError",
    "Credentials",
    "CredentialsError",
    "HarvesterError",
    "InvalidRequest",
    "QueryError",
    "QuotaExhausted",
    "RateLimited",
    "RunOptions",
    "SearchIdInvalid",
    "SinkError",
    "StateError",
    "Study",
    "StudyChangedError",
    "TaskAnalysisFailed",
    "TaskExpired",
    "TaskNotCompleted",
    "TaskNotFound",
    "TooManyRunningTasks",
    "TransientError",
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
