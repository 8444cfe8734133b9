"""A drop-in for the pyrqs SDK: `from harvester import rqs; client = rqs.RQSClient()`.

Same method names and blocking behaviour as `pyrqs.rqs.RQSClient`, so scripts written for the
SDK run unchanged against the HTTP binding (or the simulator). Results come back as JSON
text, as the SDK's documentation gives them (`json.loads` them). The async client runs on a
private event loop in a daemon thread; each method blocks on it. Configuration comes from
TIKTOK_API_BASE_URL, TIKTOK_CLIENT_KEY and TIKTOK_CLIENT_SECRET.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import orjson
import structlog
from anyio.from_thread import BlockingPortal

from harvester.api._http import ApiSession
from harvester.api._tasks import PollPolicy
from harvester.api.rqs_client import RqsClient
from harvester.api.types import Record
from harvester.query import Stage

__all__ = ["RQSClient"]

T = TypeVar("T")


class _Loop:
    """An event loop in a daemon thread, reachable through a blocking portal."""

    def __init__(self) -> None:
        self.portal: BlockingPortal | None = None
        ready = threading.Event()

        async def main() -> None:
            async with BlockingPortal() as portal:
                self.portal = portal
                ready.set()
                await portal.sleep_until_stopped()

        # Daemon: a script that never calls close() must still exit; close() runs at exit
        # (weakref.finalize) while the thread is still alive, so the HTTP session closes.
        self.thread = threading.Thread(
            target=anyio.run, args=(main,), kwargs={"backend": "asyncio"}, daemon=True
        )
        self.thread.name = "harvester-rqs"
        self.thread.start()
        ready.wait()

    def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        assert self.portal is not None
        return self.portal.call(fn)

    def stop(self, session: ApiSession) -> None:
        if self.portal is None:
            return
        portal, self.portal = self.portal, None
        # Best effort: at interpreter exit the loop may already be gone.
        with contextlib.suppress(Exception):
            portal.call(session.close)
        with contextlib.suppress(Exception):
            portal.call(portal.stop)
        self.thread.join(timeout=5)


class RQSClient:
    """Blocking Research Query Service client with the SDK's method names."""

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        stage: Stage = "execution",
        poll: PollPolicy | None = None,
        **session_options: Any,
    ) -> None:
        _quiet_logs_unless_configured()
        # Read the environment first: a missing variable fails before any thread starts.
        self._session = ApiSession.from_env(environ, **session_options)
        self._client = RqsClient(self._session, stage=stage, poll=poll)
        #: The category of each task this client created: a result of another category than
        #: `video` holds an enrichment's rows, read as they come.
        self._categories: dict[int, str] = {}
        self._loop = _Loop()
        self._finalizer = weakref.finalize(self, self._loop.stop, self._session)

    def __repr__(self) -> str:
        return f"RQSClient(base_url={self._session.base_url!r})"

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def create_query_task(
        self,
        category: str = "video",
        condition_groups: Any = None,
        fields: str | Sequence[str] = "",
        limit: int | None = None,
    ) -> int:
        """Create a task of `category` (`video` or another VCE category) and return its id."""
        task_id = self._loop.call(
            lambda: self._client.create(condition_groups or [], fields, limit, category=category)
        )
        self._categories[task_id] = category
        return task_id

    def check_query_task_status(self, task_id: int) -> str:
        """The task's status: Created, Validating, Processing, Completed, AnalysisFailed or
        Cancelled."""
        return self._loop.call(lambda: self._client.status(task_id)).status

    def get_query_task_result(self, task_id: int) -> str:
        """Every record of a Completed task, as JSON text (the seed gives the result the type
        string): `json.loads(...)` gives the list of records."""

        async def collect() -> list[Record]:
            out: list[Record] = []
            category = self._categories.get(task_id, "video")
            async for page in self._client.result_pages(task_id, category=category):
                out.extend(page.records)
            return out

        return _json_text(self._loop.call(collect))

    def cancel_query_task(self, task_id: int) -> bool:
        return self._loop.call(lambda: self._client.cancel(task_id))

    def query(
        self,
        category: str = "video",
        condition_groups: Any = None,
        fields: str | Sequence[str] = "",
        limit: int | None = None,
    ) -> str:
        """Create a task, wait for it and return its records as JSON text, like
        `get_query_task_result`."""
        records = self._loop.call(
            lambda: self._client.query(condition_groups or [], fields, limit, category=category)
        )
        return _json_text(records)


def _json_text(records: list[Record]) -> str:
    # Ids are 19 digits: JSON numbers, which `json.loads` reads back as exact ints.
    return orjson.dumps(records).decode()


def _quiet_logs_unless_configured() -> None:
    """A script using the SDK prints its data to stdout: unless the application configured
    structlog itself, send only warnings, to stderr, instead of structlog's chatty default."""
    if not structlog.is_configured():
        structlog.configure(
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
            logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        )
