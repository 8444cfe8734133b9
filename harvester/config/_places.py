"""Where the study's data and memory live: the dataset (a folder, or a prefix in a bucket) and
its partitions, the state (a SQLite file or a PostgreSQL URL) and the history of superseded
rows."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from harvester._location import check_dataset_url, is_url, redacted
from harvester.config._schema import EXAMPLES, Problem, StudyFile, shown
from harvester.fields import partition_problem


@dataclass(frozen=True, slots=True)
class Places:
    output: Path
    state: Path
    #: `postgresql://user@host:port/db` (no password) when the state lives in PostgreSQL.
    state_url: str | None
    history: Path | None
    #: `s3://bucket/prefix` when the dataset is in an object store; `output` is then a folder
    #: beside the state for what stays on the machine (quarantined records).
    output_url: str | None = None


def places(model: StudyFile, config_path: Path) -> Places:
    """Paths resolve beside the study file; the state goes beside the dataset, never inside it
    (anything in the dataset root that state does not know is removed at start-up). A dataset
    in a bucket keeps its state beside the study file."""
    base = config_path.parent
    output_url = dataset_url("output.path", model.output.path)
    output = (
        base.resolve() / model.study.name
        if output_url is not None
        else path(base, "output.path", model.output.path)
    )
    state_key = "state.path"
    state = (
        path(base, state_key, model.state.path)
        if model.state.path is not None
        else output.parent / f"{model.study.name}.state.sqlite"
    )
    if output_url is None:
        if config_path.is_relative_to(output):
            raise Problem(
                "output.path", f"{output} holds the study file", "use a folder of its own"
            )
        if state.is_relative_to(output):
            raise Problem(state_key, f"{state} is inside output.path", "keep state beside the data")
        creatable("output.path", output, folder=True)
    creatable(state_key, state, folder=False)
    history = output.with_name(f"{output.name}.history") if model.output.history else None
    state_url = _state_url(model.state.url, model.state.path)
    return Places(output, state, state_url, history, output_url)


def dataset_url(key: str, value: str | None) -> str | None:
    """An object-store URL (`s3://bucket/prefix`), checked for shape; None for a folder."""
    if value is None or not is_url(value):
        return None
    try:
        return check_dataset_url(value)
    except ValueError as e:
        problem, _, fix = str(e).partition("; ")
        raise Problem(
            key,
            f"{redacted(value)!r} {problem}",
            fix or 'write it like path = "s3://bucket/prefix"',
        ) from None


def partitions(values: list[str], fields: tuple[str, ...]) -> tuple[str, ...]:
    for i, name in enumerate(values):
        key = f"output.partition_by[{i}]"
        if name in values[:i]:
            raise Problem(key, f"{shown(name)} is repeated", "list each partition once")
        if (problem := partition_problem(name, fields)) is not None:
            raise Problem(key, *problem)
    return tuple(values)


def path(base: Path, key: str, value: str) -> Path:
    """`value` as an absolute path, relative ones beside `base` (the study file's folder)."""
    if not value.strip():
        raise Problem(key, "is empty", f"write it like {EXAMPLES[key]}")
    p = Path(value).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def creatable(key: str, path: Path, *, folder: bool) -> None:
    """Cheap check that `path` can be written or created; creates nothing."""
    if path.exists():
        if folder != path.is_dir():
            want = "a folder" if folder else "a file"
            raise Problem(key, f"{path} exists and is not {want}", "choose another path")
        if not os.access(path, os.W_OK | (os.X_OK if folder else 0)):
            raise Problem(key, f"{path} is not writable", "fix its permissions or move it")
        if not folder:
            creatable(key, path.parent, folder=True)
        return
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise Problem(key, f"cannot create {path}: {ancestor} is a file", "choose another path")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise Problem(
            key, f"cannot create {path}: {ancestor} is not writable", "choose a writable folder"
        )


def _state_url(url: str | None, path: str | None) -> str | None:
    """`[state] url`: a PostgreSQL URL without a password (that comes from PGPASSWORD or
    ~/.pgpass, never from a file that is shared and versioned)."""
    if url is None:
        return None
    if path is not None:
        raise Problem("state.url", "and state.path are both given", "keep one of them")
    parts = urlsplit(url)
    # The password check comes first: no message may echo a URL that carries one.
    if parts.password is not None or "password=" in parts.query:
        raise Problem(
            "state.url",
            "carries a password",
            "remove it from the URL and set PGPASSWORD or ~/.pgpass",
        )
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise Problem(
            "state.url",
            f"{shown(url)} is not a PostgreSQL URL",
            f"write it like {EXAMPLES['state.url']}",
        )
    return url
