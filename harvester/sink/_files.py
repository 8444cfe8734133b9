"""Durable file operations shared by staging and the dataset: write aside, fsync, rename."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from harvester._exceptions import SinkError

__all__ = ["KEY_RE", "check_key", "fsync_dir", "publish", "remove_unknown", "sink_errors"]

#: Shard keys are generated from windows; anything else must never become a path.
KEY_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,127}")


def check_key(key: str) -> str:
    if not KEY_RE.fullmatch(key):
        raise SinkError(f"not a shard key: {key!r}")
    return key


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish(tmp: Path, final: Path) -> None:
    """fsync `tmp`, rename it over `final` (atomic on POSIX) and fsync the directory."""
    with tmp.open("rb+") as f:
        os.fsync(f.fileno())
    tmp.replace(final)
    fsync_dir(final.parent)


@contextlib.contextmanager
def sink_errors(what: str) -> Iterator[None]:
    """Turn OS errors (disk full, permissions) into SinkError with the path in the message."""
    try:
        yield
    except SinkError:
        raise
    except OSError as e:
        raise SinkError(f"cannot {what}: {e.strerror or e} ({e.filename or ''})") from e


def remove_unknown(
    root: Path, known: set[str], keep: Callable[[str], bool] = lambda rel: False
) -> list[str]:
    """Unlink every file or symlink under `root` whose relative POSIX path is not in `known`
    (nor kept by `keep`), then every emptied directory; return what was unlinked.

    The walk never follows a symlink, so nothing outside `root` is ever touched.
    """
    removed: list[str] = []
    if not root.is_dir():
        return removed
    for dirpath, dirnames, filenames in os.walk(root, topdown=False, followlinks=False):
        here = Path(dirpath)
        for name in filenames + [d for d in dirnames if (here / d).is_symlink()]:
            path = here / name
            rel = path.relative_to(root).as_posix()
            if rel not in known and not keep(rel):
                path.unlink()
                removed.append(rel)
        if here != root:
            with contextlib.suppress(OSError):  # not empty: fine
                here.rmdir()
    return sorted(removed)
