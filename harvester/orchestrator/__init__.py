"""The orchestrator: the one module that ties plan, api, sink and state together."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harvester.orchestrator._entry import default_log_file, harvest, run_study
    from harvester.orchestrator._ledger import QuotaGate, QuotaLedger, RunStats
    from harvester.orchestrator._reports import (
        cancel_study,
        plan_report,
        quota_report,
        status_report,
        verify_study,
    )
    from harvester.orchestrator._run import (
        EXIT_FAILURE,
        EXIT_OK,
        EXIT_QUOTA,
        Harvest,
        RunOptions,
        staging_dir,
    )

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_QUOTA",
    "Harvest",
    "QuotaGate",
    "QuotaLedger",
    "RunOptions",
    "RunStats",
    "cancel_study",
    "default_log_file",
    "harvest",
    "plan_report",
    "quota_report",
    "run_study",
    "staging_dir",
    "status_report",
    "verify_study",
]

#: Where each name lives: imported on first use, so `harvester plan` and `harvester status`
#: never load the HTTP client, Arrow or the log set-up they do not need.
_HOME = {
    name: module
    for module, names in {
        "_entry": (
            "default_log_file",
            "harvest",
            "run_study",
        ),
        "_ledger": (
            "QuotaGate",
            "QuotaLedger",
            "RunStats",
        ),
        "_reports": (
            "cancel_study",
            "plan_report",
            "quota_report",
            "status_report",
            "verify_study",
        ),
        "_run": (
            "EXIT_FAILURE",
            "EXIT_OK",
            "EXIT_QUOTA",
            "Harvest",
            "RunOptions",
            "staging_dir",
        ),
    }.items()
    for name in names
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
