"""The run lock: one `harvester run` per study, released by the OS when its process dies."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from harvester._exceptions import StateError, StudyLocked

__all__ = ["RunLock"]


class RunLock:
    """An exclusive `flock` on `<state>.lock`. A SIGKILLed run leaves the file behind but not
    the lock, so nothing ever needs clearing by hand; the file holds the holder's pid for the
    message a second run prints."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, study: str) -> None:
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StudyLocked(
                f"study '{study}' is already being harvested by another process (pid {holder}); "
                "this run harvests nothing"
            ) from None
        except OSError as e:
            os.close(fd)
            raise StateError(f"cannot lock {self.path}: {e.strerror}") from e
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
