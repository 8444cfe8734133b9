"""A small raw-HTTP client for the simulator tests, plus a robust crawler for the flaky profile.

Deliberately independent of harvester.api: these tests pin the simulator's wire behaviour.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import orjson

from harvester.query import clean_string, parse_rest_query
from harvester.simulator import Profile, Simulator, running_simulator

QUERY_PATH = "/v2/research/video/query/"
TOKEN_PATH = "/v2/oauth/token/"


def day_epoch(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def ymd(d: date) -> str:
    return d.strftime("%Y%m%d")


@dataclass
class Answer:
    status: int
    body: Any  # parsed JSON, or the raw text when it is not JSON
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def data(self) -> dict[str, Any]:
        assert isinstance(self.body, dict), self.body
        data = self.body["data"]
        assert isinstance(data, dict)
        return data

    @property
    def code(self) -> str:
        assert isinstance(self.body, dict), self.body
        return str(self.body["error"]["code"])

    @property
    def message(self) -> str:
        assert isinstance(self.body, dict), self.body
        return str(self.body["error"]["message"])


class Client:
    def __init__(self, sim: Simulator, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.session = session
        self.token = ""

    async def login(self) -> str:
        form = {
            "client_key": self.sim.config.client_key,
            "client_secret": self.sim.config.client_secret,
            "grant_type": "client_credentials",
        }
        async with self.session.post(self.sim.base_url + TOKEN_PATH, data=form) as r:
            body = await r.json()
        self.token = body["access_token"]
        return self.token

    async def post(self, path: str, body: Any, params: dict[str, str] | None = None) -> Answer:
        if not self.token:
            await self.login()
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.session.post(
            self.sim.base_url + path, json=body, params=params, headers=headers
        ) as r:
            raw = await r.read()
            try:
                parsed: Any = orjson.loads(raw)
            except orjson.JSONDecodeError:
                parsed = raw.decode("utf-8", "replace")
            return Answer(r.status, parsed, dict(r.headers))

    async def query(
        self,
        query: dict[str, Any],
        start: str,
        end: str,
        fields: str = "id,create_time",
        **extra: Any,
    ) -> Answer:
        body = {"query": query, "start_date": start, "end_date": end, **extra}
        return await self.post(QUERY_PATH, body, {"fields": fields})

    async def crawl(
        self, query: dict[str, Any], start: str, end: str, fields: str = "id,create_time"
    ) -> list[dict[str, Any]]:
        """Every page of one window on a well-behaved server (asserts every answer is 200)."""
        out: list[dict[str, Any]] = []
        cursor, search_id = 0, ""
        while True:
            a = await self.query(
                query, start, end, fields, max_count=100, cursor=cursor, search_id=search_id
            )
            assert a.status == 200, (a.status, a.body)
            out.extend(a.data["videos"])
            cursor, search_id = a.data["cursor"], a.data["search_id"]
            if not a.data["has_more"]:
                return out

    async def rqs(self, verb: str, body: dict[str, Any]) -> Answer:
        return await self.post(f"/v2/research/query_task/{verb}/", body)


class RobustCrawler:
    """What a correct client does against the flaky profile; used to check faults are bounded."""

    def __init__(self, client: Client, query: dict[str, Any], fields: str) -> None:
        self.c = client
        self.query = query
        self.matches = parse_rest_query(query).matches
        self.fields = fields
        self.calls = 0

    async def window(self, first: date, last: date) -> dict[int, dict[str, Any]]:
        """All matches of [first, last], splitting a window that keeps failing."""
        confirmed = False
        for _ in range(6):
            got = await self._try_window(first, last)
            if got is None:
                continue
            if got or confirmed:
                return got
            confirmed = True  # an empty answer may be silent: confirm with a fresh search
        if first == last:
            raise AssertionError(f"one-day window {first} never succeeded")
        mid = first + timedelta(days=(last - first).days // 2)
        return {**await self.window(first, mid), **await self.window(mid + timedelta(1), last)}

    async def _try_window(self, first: date, last: date) -> dict[int, dict[str, Any]] | None:
        out: dict[int, dict[str, Any]] = {}
        cursor, search_id, failures = 0, "", 0
        while True:
            self.calls += 1
            assert self.calls < 5_000, "the crawl does not converge"
            try:
                a = await self.c.query(
                    self.query,
                    ymd(first),
                    ymd(last),
                    self.fields,
                    max_count=100,
                    cursor=cursor,
                    search_id=search_id,
                )
            except (TimeoutError, aiohttp.ClientError):
                failures += 1
                if failures > 8:
                    return None
                continue
            if a.status == 401:
                await self.c.login()
                continue
            if a.status == 429:  # wait on the simulator's clock instead of the wall's
                retry_after = a.headers.get("Retry-After")
                self.c.sim.clock.advance(float(retry_after) if retry_after else 86_400.0)
                continue
            if a.status == 400 and isinstance(a.body, dict):
                msg = a.message
                if "Search Id" in msg or "Invalid count or cursor" in msg:
                    return None  # restart the window without search_id
                raise AssertionError(a.body)
            if a.status != 200 or not isinstance(a.body, dict):
                failures += 1
                if failures > 8:
                    return None
                continue
            data = a.data
            for raw in data["videos"]:
                v = {k: clean_string(x) if isinstance(x, str) else x for k, x in raw.items()}
                if self.matches(v):
                    out[int(v["id"])] = v
            if not data["has_more"]:
                return out
            nxt = data.get("cursor")
            cursor = int(nxt) if nxt is not None else cursor + 100
            search_id = data["search_id"]


@asynccontextmanager
async def connect(profile: Profile = "clean", **overrides: Any) -> AsyncIterator[Client]:
    """A running simulator and a client session for it."""
    overrides.setdefault("videos_per_day", 100)
    async with running_simulator(profile, **overrides) as sim, aiohttp.ClientSession() as s:
        yield Client(sim, s)
