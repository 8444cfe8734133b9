"""The public Research API's video query, paged the way its quirks require.

Short and empty pages with `has_more`, missing cursors, search ids rejected mid-crawl,
duplicates across pages and control characters in strings are all absorbed here, so the
orchestrator sees a plain sequence of clean, deduplicated pages it can checkpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import anyio
import structlog

from harvester._exceptions import QueryError, SearchIdInvalid, Stalled
from harvester.api._http import ApiSession
from harvester.api._records import fresh_records
from harvester.api.types import Page, Record, Resume
from harvester.fields import as_int
from harvester.query import MAX_REST_WINDOW_DAYS, RestQuery, validate_fields

__all__ = ["VIDEO_QUERY", "ResearchApiClient"]

VIDEO_QUERY = "/v2/research/video/query/"
log = structlog.get_logger("harvester.api")


def _videos(data: dict[str, Any]) -> list[Any]:
    videos = data.get("videos")
    return videos if isinstance(videos, list) else []


def _day(epoch: int) -> date:
    return datetime.fromtimestamp(epoch, UTC).date()


class ResearchApiClient:
    """`POST /v2/research/video/query/` over a shared `ApiSession`.

    A search id the API has just issued is sometimes rejected ("… invalid or expired", or
    "Invalid count or cursor") and accepted seconds later: it is asked again after growing waits
    (`search_id_wait`, doubled each time) for up to `search_id_budget` seconds in all before the
    window restarts from cursor 0 without it, the last resort, which pages the window again. A
    search id handed in to resume from (a checkpoint of an earlier run, maybe of an earlier day)
    gets a single retry: ids do not survive the night, and waiting for an expired one only spends
    quota. `max_restarts` bounds the restarts. `max_empty_pages` pages in a row with `has_more`
    but no videos (or no cursor progress) are taken as a stall. `confirm_empty` asks a fresh
    search that found nothing once more, since the API has been seen to answer a matching query
    with silence. `split_after_5xx` ends the first call of a search over several days after
    that many 5xx answers, for a caller that can split windows: some date ranges fail
    persistently while their halves succeed, so splitting beats spending the whole retry budget
    (and its quota) on one. Later pages give up after one 5xx more: the halves of a window that
    has delivered pages would fetch those again. Connection, TLS, timeout and token failures say
    nothing about the window: they keep the session's whole retry policy.
    """

    def __init__(
        self,
        session: ApiSession,
        *,
        max_count: int = 100,
        end_date_inclusive: bool = True,
        search_id_wait: float = 1.0,
        search_id_budget: float = 60.0,
        max_restarts: int = 2,
        max_empty_pages: int = 25,
        confirm_empty: bool = True,
        split_after_5xx: int | None = None,
    ) -> None:
        self.session = session
        self.max_count = max_count
        self.end_date_inclusive = end_date_inclusive
        self.search_id_wait = search_id_wait
        self.search_id_budget = search_id_budget
        self.max_restarts = max_restarts
        self.max_empty_pages = max_empty_pages
        self.confirm_empty = confirm_empty
        self.split_after_5xx = split_after_5xx

    def search_id_waits(self, *, resumed: bool = False) -> list[float]:
        """The waits before each retry of a rejected search id (their sum within the budget)."""
        first, budget = self.search_id_wait, self.search_id_budget
        if resumed:
            return [min(first, budget)] if budget > 0 else []
        waits: list[float] = []
        if first <= 0:
            return waits
        total, wait = 0.0, first
        while total < budget:
            step = min(wait, budget - total)
            waits.append(step)
            total += step
            wait *= 2
        return waits

    def _dates(self, start_date: date, end_date: date) -> tuple[str, str, int | None]:
        """Wire dates, and the epoch records must stay below when end_date is sent exclusive."""
        if end_date < start_date:
            raise QueryError(f"end_date {end_date} is before start_date {start_date}")
        sent_end = end_date if self.end_date_inclusive else end_date + timedelta(days=1)
        if (sent_end - start_date).days > MAX_REST_WINDOW_DAYS:
            raise QueryError(
                f"window {start_date}..{end_date} is longer than the API's "
                f"{MAX_REST_WINDOW_DAYS} days; split it"
            )
        limit = None
        if not self.end_date_inclusive:
            limit = int(datetime.combine(sent_end, datetime.min.time(), UTC).timestamp())
        return start_date.strftime("%Y%m%d"), sent_end.strftime("%Y%m%d"), limit

    async def iter_pages(
        self,
        query: RestQuery,
        start_date: date,
        end_date: date,
        fields: str | Sequence[str],
        *,
        max_count: int | None = None,
        cursor: int = 0,
        search_id: str | None = None,
        seen_ids: Iterable[int] = (),
    ) -> AsyncIterator[Page]:
        """Every page of the query over `[start_date, end_date]` (UTC creation dates).

        Resume with the `cursor` / `search_id` of the last checkpointed page and the ids
        already stored as `seen_ids`. A page with `restarted=True` follows a restart of the
        window (see `Page`).
        """
        size = self.max_count if max_count is None else max_count
        if not 1 <= size <= 100:
            raise QueryError(f"max_count {size} is out of range; use 1 to 100")
        wanted = validate_fields(fields, "research-api")
        start_s, end_s, drop_from = self._dates(start_date, end_date)
        base = {
            "query": query.for_dates(start_s, end_s).to_json(),
            "start_date": start_s,
            "end_date": end_s,
            "max_count": size,
        }
        params = {"fields": ",".join(wanted)}
        seen = set(seen_ids)
        multi_day = end_date > start_date
        failures = restarts = stuck = 0
        confirmed = False
        restarted = False
        waits = self.search_id_waits(resumed=bool(search_id))
        scale = self.session.retry.wait_scale
        while True:
            body = dict(base, cursor=cursor)
            if search_id:
                body["search_id"] = search_id
            try:
                data = await self.session.post(
                    VIDEO_QUERY,
                    body,
                    params=params,
                    counted=True,
                    records_of=lambda d: len(_videos(d)),
                    # A window's first page gives up at once; later ones after one 5xx more:
                    # halves of a window that has delivered pages would fetch them again.
                    give_up_5xx=(
                        None
                        if not multi_day or self.split_after_5xx is None
                        else self.split_after_5xx + (1 if search_id else 0)
                    ),
                )
            except SearchIdInvalid as exc:
                failures += 1
                if failures <= len(waits):
                    delay = waits[failures - 1]
                    log.info(
                        "retry",
                        endpoint=VIDEO_QUERY,
                        kind=exc.kind,
                        attempt=failures,
                        delay=delay,
                        status=exc.status,
                        code=exc.code,
                    )
                    self.session.hooks.on_retry(exc.kind, failures, delay)
                    await anyio.sleep(delay * scale)
                    continue
                if restarts >= self.max_restarts:
                    raise
                restarts += 1
                log.warning(
                    "window_restarted",
                    start_date=start_s,
                    end_date=end_s,
                    cursor=cursor,
                    search_id=search_id,
                    reason=exc.kind,
                    restarts=restarts,
                )
                cursor, search_id, restarted, failures = 0, None, True, 0
                waits = self.search_id_waits()
                continue
            if failures:
                log.info("search_id_accepted", cursor=cursor, retries=failures)
            if search_id is None or data.get("search_id") not in (None, "", search_id):
                # A new search id is a fresh one: its rejections are waited out in full.
                waits = self.search_id_waits()
            failures = 0
            videos = _videos(data)
            has_more = bool(data.get("has_more"))
            if (
                self.confirm_empty
                and not videos
                and not has_more
                and not search_id
                and cursor == 0
                and not confirmed
            ):
                # A fresh search that finds nothing may be a silent empty answer: ask once more.
                confirmed = True
                log.info("empty_result_confirm", start_date=start_s, end_date=end_s)
                continue
            next_cursor = as_int(data.get("cursor"))
            if next_cursor is None or next_cursor < cursor:
                # Missing or null: the cursor advances by max_count, not by videos sent.
                next_cursor = cursor + size
            sid = data.get("search_id")
            search_id = str(sid) if sid not in (None, "") else search_id
            records = fresh_records(videos, seen, cleaned=True)
            if drop_from is not None:
                records = [r for r in records if not _at_or_after(r, drop_from)]
            yield Page(
                records=records,
                cursor=next_cursor,
                search_id=search_id,
                has_more=has_more,
                raw_count=len(videos),
                restarted=restarted,
            )
            restarted = False
            if not has_more:
                return
            stuck = 0 if videos and next_cursor > cursor else stuck + 1
            if stuck >= self.max_empty_pages:
                raise Stalled(f"{stuck} pages in a row without progress at cursor {next_cursor}")
            cursor = next_cursor

    async def pages(
        self,
        query: RestQuery,
        start_epoch: int,
        end_epoch: int,
        fields: Sequence[str],
        *,
        resume: Resume | None = None,
        seen_ids: Iterable[int] = (),
    ) -> AsyncIterator[Page]:
        """The `Backend` view: a half-open epoch window of whole UTC days."""
        point = resume or Resume()
        async for page in self.iter_pages(
            query,
            _day(start_epoch),
            _day(end_epoch - 1),
            fields,
            cursor=point.cursor,
            search_id=point.search_id,
            seen_ids=seen_ids,
        ):
            yield page
            del page  # not alive while the next page is fetched (see TaskRunner.task_pages)

    async def cancel(self, task_id: int) -> bool:
        """The public API runs no remote task: nothing to cancel."""
        return False

    async def query(
        self,
        query: RestQuery,
        start_date: date,
        end_date: date,
        fields: str | Sequence[str],
        *,
        max_count: int | None = None,
    ) -> list[Record]:
        """All records of the query in one list (small queries, scripts, tests)."""
        out: list[Record] = []
        async for page in self.iter_pages(query, start_date, end_date, fields, max_count=max_count):
            out.extend(page.records)
        return out


def _at_or_after(record: Record, epoch: int) -> bool:
    created = as_int(record.get("create_time"))
    return created is not None and created >= epoch
