"""Durable file operations shared by staging and the dataset: write aside, fsync, rename."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from harvester._exceptions import SinkError

__all__ = ["KEY_RE", "check_key", "fsync_dir", "publish", "sink_errors"]

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
