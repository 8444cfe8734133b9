"""Exit statuses: a contract with schedulers, kept in one place for the CLI and the run.

0 done, 1 failure, 2 bad config or query (the user's to fix), 75 the daily quota is spent
with `on_exhausted = "exit"` (EX_TEMPFAIL: try again later), 99 another run of the study is live
(a scheduler counts it as skipped), 130/143 stopped by SIGINT/SIGTERM after a clean checkpoint.
"""

from __future__ import annotations

import signal

__all__ = ["EXIT_FAILURE", "EXIT_LOCKED", "EXIT_OK", "EXIT_QUOTA", "EXIT_SIGNAL", "EXIT_USER"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USER = 2
EXIT_QUOTA = 75
EXIT_LOCKED = 99
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
