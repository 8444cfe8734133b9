"""The enrichment endpoints (comments, user info, followers, following, liked / pinned /
reposted videos, playlists) paged the way each reference page says, over the shared session.

One client serves every kind of `harvester.kinds`: the kind says the endpoint, the body key, the
list keys (any spelling the reference pages show is accepted) and how the cursor moves. A 400
naming the target as private, deleted or under 18 is the target's verdict, raised as
`TargetUnavailable` for the caller to record and go on; empty pages with `has_more` are followed
(a run of them without progress is a stall); the comment list stops at its 1,000 ceiling.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from harvester._exceptions import InvalidRequest, Stalled, TargetUnavailable
from harvester.api._http import ApiSession
from harvester.api.types import Record, utcnow
from harvester.kinds import COMMENT_CEILING, Kind

__all__ = ["EnrichClient", "TargetPage", "TargetUnavailable", "verdict_of"]

log = structlog.get_logger("harvester.api")

_VERDICTS = (
    ("under_18", re.compile(r"under[ -]?18|age", re.I)),
    ("private", re.compile(r"private", re.I)),
    ("deleted", re.compile(r"not exist|deleted|not found|no such|banned|removed", re.I)),
)


def verdict_of(exc: InvalidRequest) -> str | None:
    """The per-target verdict a 400 names, or None when it is about the request itself."""
    text = exc.message
    for verdict, pattern in _VERDICTS:
        if pattern.search(text):
            return verdict
    return None


@dataclass(frozen=True, slots=True)
class TargetPage:
    """One answer page of one target: records (cleaned, deduplicated by the kind's record key)
    and where the next page starts (`cursor`; None when the endpoint does not page)."""

    records: list[Record]
    cursor: int | None
    has_more: bool
    raw_count: int
    fetched_at: datetime = field(default_factory=utcnow)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


class EnrichClient:
    """Pages of one enrichment kind over a shared `ApiSession` (token, retries, rate limit and
    the quota hooks, which see the endpoint and so charge the kind's own pool)."""

    def __init__(
        self, session: ApiSession, kind: Kind, *, max_count: int = 100, max_empty_pages: int = 25
    ) -> None:
        self.session = session
        self.kind = kind
        self.max_count = min(max_count, kind.max_count)
        self.max_empty_pages = max_empty_pages

    def _list(self, data: dict[str, Any]) -> list[Any]:
        for key in self.kind.list_keys:
            value = data.get(key)
            if isinstance(value, list):
                return value
        return []

    async def pages(
        self,
        target: Any,
        *,
        cursor: int | None = None,
        comment_id: int | None = None,
        seen: set[Any] | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[TargetPage]:
        """Every page of `target` from `cursor` (None: the start), `limit` records at most.

        `comment_id` asks for a comment's replies instead of a video's comments. `seen` holds
        the record keys already stored for this target (updated): repeats are dropped.
        """
        kind = self.kind
        seen = set() if seen is None else seen
        params = {"fields": ",".join(kind.field_names)} if kind.fields_param else None
        stuck = 0
        delivered = 0
        while True:
            if limit is not None and delivered >= limit:
                return
            if kind.name == "comments" and cursor is not None and cursor >= COMMENT_CEILING:
                return  # the API serves the top 1,000 only: asking further costs quota for nothing
            body: dict[str, Any] = (
                {"comment_id": comment_id} if comment_id is not None else {kind.body_key: target}
            )
            if kind.paging != "none":
                body["max_count"] = self.max_count
                if cursor is not None:
                    body["cursor"] = cursor
            try:
                data = await self.session.post(
                    kind.endpoint,
                    body,
                    params=params,
                    counted=True,
                    records_of=lambda d: 1 if kind.flat else len(self._raw(d)),
                )
            except InvalidRequest as exc:
                verdict = verdict_of(exc)
                if verdict is None:
                    raise
                raise TargetUnavailable(
                    exc.message,
                    status=exc.status,
                    code=exc.code,
                    log_id=exc.log_id,
                    verdict=verdict,
                ) from None
            if kind.flat:
                yield TargetPage([dict(data)], None, False, 1)
                return
            raw = self._raw(data)
            has_more = bool(data.get("has_more")) and kind.paging != "none"
            next_cursor = _int(data.get("cursor"))
            records = self._records(raw, data, cursor, next_cursor, seen)
            if limit is not None:
                records = records[: max(0, limit - delivered)]
            delivered += len(records)
            if next_cursor is None and has_more:
                next_cursor = self._fallback(raw, cursor)
            progressed = next_cursor is not None and next_cursor != cursor
            yield TargetPage(records, next_cursor, has_more, len(raw))
            if not has_more:
                return
            stuck = 0 if raw and progressed else stuck + 1
            if stuck >= self.max_empty_pages:
                raise Stalled(f"{stuck} pages in a row without progress at cursor {next_cursor}")
            cursor = next_cursor

    def _raw(self, data: dict[str, Any]) -> list[Any]:
        return [] if self.kind.flat else self._list(data)

    def _fallback(self, raw: list[Any], cursor: int | None) -> int | None:
        """Where the next page starts when the answer leaves `cursor` out."""
        if self.kind.paging == "index":
            return (cursor or 0) + self.max_count
        times = [_int(r.get("create_time")) for r in raw if isinstance(r, dict)]
        known = [t for t in times if t is not None]
        return min(known) - 1 if known else cursor

    def _records(
        self,
        raw: list[Any],
        data: dict[str, Any],
        cursor: int | None,
        next_cursor: int | None,
        seen: set[Any],
    ) -> list[Record]:
        kind = self.kind
        if kind.name == "playlists":
            # Ids only: positions count back from the answer's cursor (a repeated id at the
            # front of a page is the previous page's last, and gets its position).
            end = next_cursor if next_cursor is not None else (cursor or 0) + len(raw)
            meta = {
                k: data.get(k)
                for k in ("playlist_name", "playlist_item_total", "playlist_last_updated")
            }
            raw = [
                {"video_id": vid, "position": end - len(raw) + i, **meta}
                for i, vid in enumerate(raw)
            ]
        out: list[Record] = []
        for item in raw:
            if not isinstance(item, dict):
                continue
            if "favourites_count" in item and "favorites_count" not in item:
                # One reference page spells it the British way.
                item = {
                    ("favorites_count" if k == "favourites_count" else k): v
                    for k, v in item.items()
                }
            key = item.get(kind.record_key)
            if key is not None:
                if key in seen:
                    continue
                seen.add(key)
            out.append(item)
        return out
