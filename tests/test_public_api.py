"""The package's public surface: everything a user needs is importable from `harvester`."""

from __future__ import annotations
import __future__

import types

import harvester
from harvester import _exceptions


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


def _error_classes(module: types.ModuleType) -> dict[str, type[BaseException]]:
    return {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    }


def test_every_error_in_the_tree_is_public_and_a_harvester_error() -> None:
    # Whatever its name ends in (Stalled, BadAnswer, TokenRejected ...): every class the tree
    # defines is exported, and nothing else harvester exports is an exception.
    tree = _error_classes(_exceptions)
    exported = {n: getattr(harvester, n) for n in harvester.__all__ if n != "__version__"}
    assert {n for n, v in exported.items() if isinstance(v, type)} >= set(tree)
    assert _error_classes(types.SimpleNamespace(**exported)) == tree  # type: ignore[arg-type]
    assert all(issubclass(e, harvester.HarvesterError) for e in tree.values())


def test_the_tree_in_the_docstring_names_every_class_under_its_parent() -> None:
    doc = _exceptions.__doc__ or ""
    drawn = {}
    for line in doc.splitlines():
        stripped = line.lstrip(" │├└─")
        name = stripped.split(" ", 1)[0]
        if name in _error_classes(_exceptions):
            drawn[name] = (len(line) - len(stripped)) // 4 - 1  # the drawing is indented once
    tree = _error_classes(_exceptions)
    assert set(drawn) == set(tree)
    # Depth in the drawing is depth in the class hierarchy below HarvesterError.
    for name, cls in tree.items():
        depth = cls.__mro__.index(harvester.HarvesterError)
        assert drawn[name] == depth, name


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
        *_exceptions.RETRIED_BY_SESSION,
    ):
        assert issubclass(cls, harvester.TransientError)
    assert not issubclass(harvester.QuotaExhausted, harvester.TransientError)


def test_every_kind_is_distinct() -> None:
    # `kind` keys the error counts of `harvester status`: two classes must not share one.
    kinds = [
        c.kind for c in _error_classes(_exceptions).values() if issubclass(c, harvester.ApiError)
    ]
    assert len(kinds) == len(set(kinds))
