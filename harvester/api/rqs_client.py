"""The Research Query Service over the project's HTTP binding (see rqs-http.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Unpack

import anyio
import pyarrow as pa

from harvester._exceptions import BadAnswer, ConfigError, InvalidRequest, Stalled
from harvester.api._http import ApiSession
from harvester.api._pages import PageDecoder
from harvester.api._records import coerce_records
from harvester.api._tasks import ResultRead, TaskOptions, TaskRunner, _Slot, normalise_status
from harvester.api.types import Page, TaskStatus
from harvester.fields import as_int

__all__ = ["CANCEL", "CREATE", "RESULT", "STATUS", "RqsClient"]

CREATE = "/v2/research/query_task/create/"
STATUS = "/v2/research/query_task/status/"
RESULT = "/v2/research/query_task/result/"
CANCEL = "/v2/research/query_task/cancel/"
#: TikTok serves the Research Query Service only inside its VCE, through the pyrqs SDK.
NO_PUBLIC_RQS = (
    "the RQS HTTP binding is this project's own, served by `harvester simulate` or by a "
    "gateway in front of the pyrqs SDK, not by TikTok; check api.base_url (inside TikTok's "
    'VCE, use source = "pyrqs")'
)


def _count(data: dict[str, Any]) -> int:
    """Records in a result answer's data, decoded either way (for the quota hooks)."""
    result = data.get("result")
    if isinstance(result, pa.StructArray):
        return len(result)
    return len(coerce_records(result))


class RqsClient(TaskRunner):
    """The four verbs over a shared `ApiSession`; paging, polling and retries from TaskRunner.

    `create` and `result` are counted against the quota (the hooks see them); status polls
    and cancels are not.
    """

    def __init__(
        self,
        session: ApiSession,
        *,
        page_slots: anyio.CapacityLimiter | None = None,
        arrow: bool = False,
        **options: Unpack[TaskOptions],
    ) -> None:
        super().__init__(**options)
        self.session = session
        #: Result pages in memory at once across every task (None: no bound).
        self.page_slots = page_slots
        self.hooks = session.hooks
        #: Decode result pages straight into Arrow (`Page.rows`) when the fields are known.
        self.arrow = arrow
        self._decoders: dict[tuple[str, ...], PageDecoder] = {}

    def _decoder(self, fields: Sequence[str]) -> PageDecoder | None:
        if not self.arrow or not fields:
            return None
        key = tuple(fields)
        decoder = self._decoders.get(key)
        if decoder is None:
            meta = {"cursor": pa.int64(), "has_more": pa.bool_(), "total": pa.int64()}
            decoder = self._decoders[key] = PageDecoder("result", key, meta)
        return decoder

    async def _create(
        self, category: str, groups: list[Any], wanted: tuple[str, ...], lim: int
    ) -> int:
        body = {
            "category": category,
            "condition_groups": groups,
            "fields": ",".join(wanted),
            "limit": lim,
        }
        try:
            data = await self.session.post(CREATE, body, counted=True)
        except InvalidRequest as exc:
            if exc.status == 404:
                raise ConfigError(
                    f"{self.session.base_url} serves no RQS endpoint (404 on {CREATE}): "
                    f"{NO_PUBLIC_RQS}"
                ) from None
            raise
        task_id = as_int(data.get("task_id"))
        if task_id is None:
            raise BadAnswer("create answered without a task_id")
        return task_id

    async def status(self, task_id: int) -> TaskStatus:
        data = await self.session.post(STATUS, {"task_id": task_id})
        return normalise_status(data.get("status"), data.get("message"))

    async def cancel(self, task_id: int) -> bool:
        data = await self.session.post(CANCEL, {"task_id": task_id})
        return bool(data.get("success"))

    async def _result_pages(self, read: ResultRead, cursor: int) -> AsyncIterator[Page]:
        task_id = read.task_id
        size = max(1, min(read.size, 10_000))
        fast = self._decoder(read.fields)
        slot = _Slot(self.page_slots)
        try:
            while True:
                # A page holds its slot from its request until the caller asks for the next:
                # ten thousand decoded records are tens of megabytes.
                slot.give()
                await slot.take()
                data = await self.session.post(
                    RESULT,
                    {"task_id": task_id, "cursor": cursor, "max_count": size},
                    counted=True,
                    records_of=_count,
                    fast=fast,
                )
                result = data.get("result")
                rows = result if fast is not None and isinstance(result, pa.StructArray) else None
                raw = [] if rows is not None else coerce_records(result)
                received = len(rows) if rows is not None else len(raw)
                total = as_int(data.get("total"))
                next_cursor = as_int(data.get("cursor"))
                if next_cursor is None or next_cursor < cursor:
                    next_cursor = cursor + received
                has_more = data.get("has_more")
                more = (
                    bool(has_more)
                    if has_more is not None
                    else total is not None and next_cursor < total
                )
                if more and next_cursor == cursor:
                    raise Stalled(f"task {task_id} result stuck at cursor {cursor}")
                page = read.page(
                    raw, next_cursor, more, total, received=received, rows=rows, cleaned=True
                )
                # Only the caller may keep a page alive once it is yielded: a reference held
                # here would outlive the slot, while the next page is on the wire.
                del data, raw, rows, result
                yield page
                del page
                if not more:
                    return
                cursor = next_cursor
        finally:
            slot.give()
