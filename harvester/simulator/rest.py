"""`POST /v2/research/video/query/`: the public API's video search with its paging quirks.

A fresh search (no `search_id`) evaluates the query over the window, newest first, and caches the
ordered ids under a new `search_id`; later pages slice that list at `cursor`. Paging faults act on
that slice only, and never hide a record from a client that follows the server's `cursor`: a short
page hands back a cursor just past what it returned.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from harvester._exceptions import QueryError
from harvester.query import RestQuery, parse_rest_query, validate_fields
from harvester.simulator.corpus import DAY
from harvester.simulator.fuzzy import approximate_predicate
from harvester.simulator.responses import BadBody, Invalid, body_int, error, ok, read_json

if TYPE_CHECKING:
    from harvester.simulator.app import Simulator

__all__ = ["SearchCache", "video_query"]

ENDPOINT = "rest.video_query"
MAX_WINDOW_DAYS = 30
FUZZY_FIELDS = frozenset({"keyword", "hashtag_name"})
_SEARCH_CACHE_SIZE = 4_096


@dataclass(frozen=True, slots=True)
class Search:
    ids: tuple[int, ...]
    expires: float


class SearchCache:
    """search_id -> the search's ordered ids, for `search_ttl` seconds of the clock."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._searches: OrderedDict[str, Search] = OrderedDict()

    def put(self, ids: tuple[int, ...]) -> str:
        search_id = str(self.sim.new_id())
        self._searches[search_id] = Search(ids, self.sim.clock.now() + self.sim.config.search_ttl)
        if len(self._searches) > _SEARCH_CACHE_SIZE:
            self._searches.popitem(last=False)
        self.sim.stats.searches_started += 1
        return search_id

    def get(self, search_id: str) -> tuple[int, ...] | None:
        s = self._searches.get(search_id)
        if s is None or s.expires <= self.sim.clock.now():
            return None
        return s.ids


def _date(body: dict[str, Any], key: str) -> int:
    raw = body.get(key)
    if not isinstance(raw, str) or len(raw) != 8 or not raw.isdigit():
        raise Invalid(f"{key} must be a date in YYYYMMDD form")
    try:
        d = datetime.strptime(raw, "%Y%m%d").replace(tzinfo=UTC)
    except ValueError:
        raise Invalid(f"{key} {raw!r} is not a valid date") from None
    return int(d.timestamp()) // DAY


def _parse(
    request: web.Request, body: dict[str, Any]
) -> tuple[tuple[str, ...], RestQuery, int, int]:
    try:
        fields = validate_fields(request.query.get("fields", ""), "research-api")
        query = parse_rest_query(body.get("query"))
    except QueryError as e:
        raise Invalid(str(e)) from None
    first, last = _date(body, "start_date"), _date(body, "end_date")
    if last < first:
        raise Invalid("end_date must not be before start_date")
    if last - first > MAX_WINDOW_DAYS:
        raise Invalid("end_date must be no more than 30 days after start_date")
    return fields, query, first, last


def _matching(sim: Simulator, query: RestQuery, first: int, last: int, key: str) -> list[int]:
    """Matches in [first, last] (days, inclusive), newest first, with fuzzy false positives:
    near strings in approximate mode, and random extras at the `fuzzy_false_positive` rate."""
    start, end = first * DAY, (last + 1) * DAY
    approximate = bool(sim.config.approximate_matching)
    matches = approximate_predicate(query) if approximate else query.matches
    exact = query.matches
    hits: list[int] = []
    misses: list[int] = []
    near = lost = 0
    for v in sim.corpus.videos(start, end):
        if matches(v):
            hits.append(v["id"])
            if approximate and not exact(v):
                near += 1
        else:
            misses.append(v["id"])
            if approximate and exact(v):
                lost += 1  # a true match an approximate `not` excluded
    if near:
        sim.faults.note("approximate_match", ENDPOINT, near)
    if lost:
        sim.faults.note("approximate_exclusion", ENDPOINT, lost)
    rate = sim.faults.config.fuzzy_false_positive
    fuzzy = any(c.field_name in FUZZY_FIELDS for c in (*query.and_, *query.or_))
    if rate > 0 and fuzzy and misses:
        k = round(rate * max(len(hits), 20))
        extra = [misses[i] for i in sim.faults.pick("fuzzy_false_positive", k, len(misses))]
        if extra:
            sim.faults.note("fuzzy_false_positive", ENDPOINT, len(extra))
            hits.extend(extra)
    hits.sort(reverse=True)
    return hits


async def video_query(sim: Simulator, request: web.Request) -> web.Response:
    try:
        body = await read_json(request)
        fields, query, first, last = _parse(request, body)
        max_count = body_int(body, "max_count", 20, 1, 100)
        cursor = body_int(body, "cursor", 0, 0, 2**63 - 1)
    except (BadBody, Invalid) as e:
        return error(400, "invalid_params", str(e), sim.log_id())
    faults = sim.faults
    key = f"{query.fingerprint_json()}|{first}|{last}"

    def matched() -> int:
        window = sim.corpus.videos(first * DAY, (last + 1) * DAY)
        return sum(1 for v in window if query.matches(v))

    if faults.window_fails(first, last, ENDPOINT, matched) or faults.poisoned(
        first * DAY, (last + 1) * DAY, ENDPOINT
    ):
        msg = "Something went wrong. Please try again later."
        return error(500, "internal_error", msg, sim.log_id())
    if body.get("is_random") is True:
        found = _matching(sim, query, first, last, key)
        picked = sorted(sim.rng.sample(found, min(len(found), max_count)), reverse=True)
        return _page(sim, fields, picked, {"cursor": 0, "has_more": False, "search_id": ""})
    ids: tuple[int, ...]
    raw_sid = body.get("search_id")
    search_id = str(raw_sid) if raw_sid not in (None, "", 0) else ""
    if search_id:
        cached = sim.searches.get(search_id)
        if cached is None or faults.bounded("search_id_rejected", key, ENDPOINT):
            msg = f"Search Id {search_id} is invalid or expired"
            return error(400, "invalid_params", msg, sim.log_id())
        if cursor > 0 and faults.bounded("invalid_cursor", key, ENDPOINT):
            return error(400, "invalid_params", "Invalid count or cursor", sim.log_id())
        ids = cached
    else:
        ids = tuple(_matching(sim, query, first, last, key))
        search_id = sim.searches.put(ids)
        if cursor == 0 and ids and faults.once("silent_empty", key, ENDPOINT):
            return _page(sim, fields, [], {"cursor": 0, "has_more": False, "search_id": search_id})
    n = max_count
    remaining = len(ids) - cursor
    if remaining > max_count and faults.fires("huge_page"):
        faults.note("huge_page", ENDPOINT)
        n = max_count * 5
    elif remaining > 0 and faults.alternating("short_page", search_id, ENDPOINT):
        n = faults.rng("short_page").randrange(min(max_count, remaining))
    page = list(ids[cursor : cursor + n])
    next_cursor = cursor + len(page)
    has_more = next_cursor < len(ids)
    if cursor > 0 and page and faults.fires("duplicate"):
        faults.note("duplicate", ENDPOINT)
        page.insert(faults.rng("duplicate").randrange(len(page) + 1), ids[cursor - 1])
    data: dict[str, Any] = {"cursor": next_cursor, "has_more": has_more, "search_id": search_id}
    # Only on a page that advanced by exactly max_count, so a client that adds max_count is right.
    if next_cursor - cursor == max_count and has_more and faults.fires("cursor_missing"):
        faults.note("cursor_missing", ENDPOINT)
        if faults.rng("cursor_missing").random() < 0.5:
            del data["cursor"]
        else:
            data["cursor"] = None
    return _page(sim, fields, page, data)


def _page(
    sim: Simulator, fields: tuple[str, ...], ids: list[int], data: dict[str, Any]
) -> web.Response:
    videos = [{f: v[f] for f in fields} for v in sim.corpus.lookup(ids)]
    sim.faults.mutate_records(videos, fields)
    sim.count_records(len(videos))
    return ok({"videos": videos, **data}, sim.log_id())
