"""The package's public surface: everything a user needs is importable from `harvester`."""

from __future__ import annotations
import __future__

import types

import harvester


def test_all_is_sorted_and_complete() -> None:
    public = {  # dir(), not vars(): the run's entry points are loaded on first use
        name
        for name in dir(harvester)
        if not name.startswith("_")
        and not isinstance(getattr(harvester, name), types.ModuleType | __future__._Feature)
    }
    assert set(harvester.__all__) == public | {"__version__"}
    names = [n for n in harvester.__all__ if n != "__version__"]
    assert names == sorted(names)


def test_every_error_is_a_harvester_error() -> None:
    errors = [getattr(harvester, n) for n in harvester.__all__ if n.endswith(("Error", "ed"))]
    classes = [e for e in errors if isinstance(e, type) and issubclass(e, BaseException)]
    assert len(classes) >= 15
    assert all(issubclass(e, harvester.HarvesterError) for e in classes)


def test_user_errors_exit_2() -> None:
    for cls in (
        harvester.ConfigError,
        harvester.QueryError,
        harvester.CredentialsError,
        harvester.StudyChangedError,
    ):
        assert issubclass(cls, harvester.UserError) and cls.exit_code == 2


def test_transient_errors_are_the_retryable_ones() -> None:
    for cls in (
        harvester.RateLimited,
        harvester.TooManyRunningTasks,
        harvester.SearchIdInvalid,
        harvester.TaskAnalysisFailed,
    ):
        assert issubclass(cls, harvester.TransientError)
    assert not issubclass(harvester.QuotaExhausted, harvester.TransientError)
