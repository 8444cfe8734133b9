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
        at = _Paging(self, (start_s, end_s), size, cursor, search_id)
        while True:
            try:
                data = await self.session.post(
                    VIDEO_QUERY,
                    at.body(base),
                    params=params,
                    counted=True,
                    records_of=lambda d: len(_videos(d)),
                    # A window's first page gives up at once; later ones after one 5xx more:
                    # halves of a window that has delivered pages would fetch them again.
                    give_up_5xx=(
                        None
                        if not multi_day or self.split_after_5xx is None
                        else self.split_after_5xx + (1 if at.search_id else 0)
                    ),
                )
            except SearchIdInvalid as exc:
                delay = at.rejected(exc)
                if delay is not None:
                    self.session.note_retry(VIDEO_QUERY, exc, at.failures, delay)
                    await anyio.sleep(delay * self.session.retry.wait_scale)
                continue
            at.answered(data)
            videos = _videos(data)
            has_more = bool(data.get("has_more"))
            if at.confirm_empty(videos, has_more):
                continue
            next_cursor = at.next_cursor(data)
            records = fresh_records(videos, seen, cleaned=True)
            if drop_from is not None:
                records = [r for r in records if not _at_or_after(r, drop_from)]
            yield Page(
                records=records,
                cursor=next_cursor,
                search_id=at.search_id,
                has_more=has_more,
                raw_count=len(videos),
                restarted=(restarted := at.take_restarted()),
                restart_reason=at.restart_reason if restarted else "",
            )
            if not has_more:
                return
            at.advance(bool(videos), next_cursor)

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


class _Paging:
    """Where the paging of one window stands: the cursor and search id to send next, and the
    rejections, restarts and empty pages met so far, with the rules for each."""

    def __init__(
        self,
        client: ResearchApiClient,
        window: tuple[str, str],
        size: int,
        cursor: int,
        search_id: str | None,
    ) -> None:
        self.client, self.window, self.size = client, window, size
        self.cursor, self.search_id = cursor, search_id
        self.failures = self.restarts = self.stuck = 0
        self.confirmed = self.restarted = False
        self.restart_reason = ""
        self.waits = client.search_id_waits(resumed=bool(search_id))

    def body(self, base: dict[str, Any]) -> dict[str, Any]:
        body = dict(base, cursor=self.cursor)
        if self.search_id:
            body["search_id"] = self.search_id
        return body

    def rejected(self, exc: SearchIdInvalid) -> float | None:
        """The wait before asking again with the same search id, or None when the window was
        restarted from cursor 0 without it; raises `exc` once the restarts are spent."""
        self.failures += 1
        if self.failures <= len(self.waits):
            return self.waits[self.failures - 1]
        if self.restarts >= self.client.max_restarts:
            raise exc
        self.restarts += 1
        log.warning(
            "window_restarted",
            start_date=self.window[0],
            end_date=self.window[1],
            cursor=self.cursor,
            search_id=self.search_id,
            reason=exc.kind,
            restarts=self.restarts,
        )
        self.cursor, self.search_id, self.restarted, self.failures = 0, None, True, 0
        self.restart_reason = exc.kind
        self.waits = self.client.search_id_waits()
        return None

    def answered(self, data: dict[str, Any]) -> None:
        if self.failures:
            log.info("search_id_accepted", cursor=self.cursor, retries=self.failures)
        if self.search_id is None or data.get("search_id") not in (None, "", self.search_id):
            # A new search id is a fresh one: its rejections are waited out in full.
            self.waits = self.client.search_id_waits()
        self.failures = 0

    def confirm_empty(self, videos: list[Any], has_more: bool) -> bool:
        """A fresh search that finds nothing may be a silent empty answer: ask once more."""
        if (
            self.client.confirm_empty
            and not videos
            and not has_more
            and not self.search_id
            and self.cursor == 0
            and not self.confirmed
        ):
            self.confirmed = True
            log.info("empty_result_confirm", start_date=self.window[0], end_date=self.window[1])
            return True
        return False

    def next_cursor(self, data: dict[str, Any]) -> int:
        """The answer's cursor (and search id, kept for the next call)."""
        next_cursor = as_int(data.get("cursor"))
        if next_cursor is None or next_cursor < self.cursor:
            # Missing or null: the cursor advances by max_count, not by videos sent.
            next_cursor = self.cursor + self.size
        sid = data.get("search_id")
        self.search_id = str(sid) if sid not in (None, "") else self.search_id
        return next_cursor

    def take_restarted(self) -> bool:
        """Whether the page about to be yielded follows a restart (told once)."""
        restarted, self.restarted = self.restarted, False
        return restarted

    def advance(self, had_videos: bool, next_cursor: int) -> None:
        self.stuck = 0 if had_videos and next_cursor > self.cursor else self.stuck + 1
        if self.stuck >= self.client.max_empty_pages:
            raise Stalled(f"{self.stuck} pages in a row without progress at cursor {next_cursor}")
        self.cursor = next_cursor


def _at_or_after(record: Record, epoch: int) -> bool:
    created = as_int(record.get("create_time"))
    return created is not None and created >= epoch
