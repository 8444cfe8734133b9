"""Drive a real `pyrqs.rqs.RQSClient` (blocking, undocumented return shapes) from async code.

Each SDK call runs in a worker thread under a shared `CapacityLimiter`, so the SDK's blocking
I/O never stalls the event loop and never runs more calls at once than the limiter allows.
Return values are accepted in every shape seen or plausible: plain values, dicts (possibly
under `data`), JSON text.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar, Unpack

import anyio
import orjson

from harvester._exceptions import ApiError, BadAnswer, HarvesterError, SdkError
from harvester.api._http import NoHooks, RequestHooks
from harvester.api._records import coerce_records
from harvester.api._tasks import ResultRead, TaskOptions, TaskRunner, normalise_status
from harvester.api.rqs_client import CREATE, RESULT
from harvester.api.types import Page, TaskStatus
from harvester.fields import as_int

__all__ = ["PyrqsBackend", "SdkClient"]

T = TypeVar("T")


class SdkClient(Protocol):
    """The four methods of `pyrqs.rqs.RQSClient` this backend calls."""

    def create_query_task(
        self, category: str, condition_groups: Any, fields: str, limit: int
    ) -> Any: ...

    def check_query_task_status(self, task_id: int) -> Any: ...

    def get_query_task_result(self, task_id: int) -> Any: ...

    def cancel_query_task(self, task_id: int) -> Any: ...


def _unwrap(answer: Any) -> Any:
    """JSON text parsed; a `{"data": {...}}` envelope opened."""
    if isinstance(answer, str | bytes | bytearray):
        try:
            answer = orjson.loads(answer)
        except orjson.JSONDecodeError:
            return answer
    if isinstance(answer, dict) and isinstance(answer.get("data"), dict):
        return answer["data"]
    return answer


def _task_id(answer: Any) -> int:
    value = _unwrap(answer)
    if isinstance(value, dict):
        value = value.get("task_id")
    if (task_id := as_int(value)) is not None:
        return task_id
    raise BadAnswer("the SDK's create_query_task gave no task id")


class PyrqsBackend(TaskRunner):
    """A Research Query Service backend over an SDK client object."""

    def __init__(
        self,
        client_obj: SdkClient,
        limiter: anyio.CapacityLimiter,
        *,
        hooks: RequestHooks | None = None,
        **options: Unpack[TaskOptions],
    ) -> None:
        super().__init__(**options)
        self.client = client_obj
        self.limiter = limiter
        self.hooks: RequestHooks = hooks or NoHooks()

    async def _call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run one blocking SDK call in a worker thread; foreign errors become ApiError."""
        try:
            return await anyio.to_thread.run_sync(
                functools.partial(fn, *args, **kw), limiter=self.limiter
            )
        except HarvesterError:
            raise
        except Exception as exc:
            raise SdkError(f"pyrqs call failed ({type(exc).__name__})") from None

    async def _counted(self, endpoint: str, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        await self.hooks.reserve(endpoint)
        ok, records = False, 0
        try:
            answer = await self._call(fn, *args, **kw)
            if endpoint == RESULT:
                records = len(coerce_records(answer))
            ok = True
            return answer
        except ApiError as exc:
            self.hooks.on_error(exc.kind)
            raise
        finally:
            self.hooks.settle(endpoint, ok=ok, records=records)

    async def _create(
        self, category: str, groups: list[Any], wanted: tuple[str, ...], lim: int
    ) -> int:
        answer = await self._counted(
            CREATE,
            self.client.create_query_task,
            category=category,
            condition_groups=groups,
            fields=",".join(wanted),
            limit=lim,
        )
        return _task_id(answer)

    async def status(self, task_id: int) -> TaskStatus:
        answer = _unwrap(await self._call(self.client.check_query_task_status, task_id))
        if isinstance(answer, dict):
            return normalise_status(answer.get("status"), answer.get("message"))
        return normalise_status(answer)

    async def cancel(self, task_id: int) -> bool:
        answer = _unwrap(await self._call(self.client.cancel_query_task, task_id))
        if isinstance(answer, dict):
            return bool(answer.get("success"))
        return bool(answer)

    async def _result_pages(self, read: ResultRead, cursor: int) -> AsyncIterator[Page]:
        # The SDK hands over the whole result at once; it is cut into pages so the caller
        # checkpoints as often as with the HTTP backend, and `cursor` indexes into it.
        answer = await self._counted(RESULT, self.client.get_query_task_result, read.task_id)
        everything = coerce_records(answer)
        total = len(everything)
        size = max(1, read.size)
        start = min(cursor, total)
        while True:
            chunk = everything[start : start + size]
            end = start + len(chunk)
            yield read.page(chunk, end, end < total, total)
            if end >= total:
                return
            start = end
