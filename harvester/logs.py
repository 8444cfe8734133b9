"""structlog set-up: one JSON log file per run, short human lines on stderr, secrets scrubbed.

Every external behaviour has an event with stable keys (shard_submitted, shard_split,
page_fetched, retry, quota_wait, file_committed, ...), so a run can be followed from the JSON log
alone. The scrubber is a last line of defence: the HTTP layer already keeps secrets out of events.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import orjson
import stamina
import structlog

__all__ = ["configure_logging", "console_lines_to", "register_secret", "scrub"]

#: Where console lines go instead of the console stream while a live display owns the terminal
#: (`console_lines_to`): a line written beside the display's cursor moves would tear its frame.
_console_hook: Callable[[str], None] | None = None

_SECRETS: set[str] = set()
_REDACTED = "[redacted]"


def register_secret(value: str | None) -> None:
    """Never let `value` reach a log line (client secrets, access tokens)."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def scrub(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    return text


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(v) for v in value]
    if isinstance(value, BaseException):
        return scrub(f"{type(value).__name__}: {value}")
    return value


def _scrub_processor(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if not _SECRETS:
        return event
    return {k: _scrub_value(v) for k, v in event.items()}


class _Tee:
    """Writes JSON lines to the run's log file (the console line is `_render`'s)."""

    def __init__(self, file: TextIO | None) -> None:
        self._file = file

    def msg(self, message: str) -> None:
        if self._file is not None:
            self._file.write(message + "\n")
            self._file.flush()

    def __getattr__(self, _name: str) -> Any:
        return self.msg


_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_QUIET_KEYS = {"event", "level", "timestamp"}


def _render(console: TextIO | None, console_level: int) -> Any:
    def render(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> str:
        line = orjson.dumps(event, default=str).decode()
        if console is not None and _LEVELS.get(str(event.get("level")), 20) >= console_level:
            said = event.get("message")
            if said is None:  # an event meant for the JSON log first: its keys, as they are
                said = " ".join(
                    [str(event.get("event"))]
                    + [f"{k}={v}" for k, v in event.items() if k not in _QUIET_KEYS]
                )
            text = f"{event.get('level', 'info')}: {said}"
            hook = _console_hook
            if hook is not None:
                hook(text)
            else:
                console.write(text + "\n")
                console.flush()
        return line

    return render


@contextmanager
def console_lines_to(write: Callable[[str], None]) -> Iterator[None]:
    """For the block, hand every console line to `write` (the live display prints it above its
    region) instead of writing it to the console stream."""
    global _console_hook
    previous, _console_hook = _console_hook, write
    try:
        yield
    finally:
        _console_hook = previous


def configure_logging(
    log_path: Path | None = None,
    *,
    console: TextIO | None = None,
    console_level: str = "warning",
) -> None:
    """Route structlog events to `log_path` (JSON lines) and warnings to stderr."""
    file: TextIO | None = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        file = log_path.open("a", encoding="utf-8")
    out = console if console is not None else sys.stderr
    level = _LEVELS.get(console_level, logging.WARNING)
    # The API layer logs its own `retry` events with our keys; stamina's would say it twice.
    stamina.instrumentation.set_on_retry_hooks([])
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _scrub_processor,
            _render(out, level),
        ],
        logger_factory=lambda *_: _Tee(file),
        cache_logger_on_first_use=False,
    )
