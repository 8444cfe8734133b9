"""A tiny scripted API on loopback for fault sequences the simulator cannot stage precisely.

Each path answers from its own queue of steps ("401 then 200", "504 HTML", a reset); when a
queue runs dry the path's default step answers. The token endpoint issues numbered tokens.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

Step = Callable[[web.Request], Awaitable[web.StreamResponse]]

SECRET = "sup3r-s3cret-value"
KEY = "fake-client-key"


def ok(data: Mapping[str, Any]) -> Step:
    return answer(200, {"data": data, "error": {"code": "ok", "message": "", "log_id": "L1"}})


def answer(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Step:
    async def step(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
        )

    return step


def err(
    status: int, code: str, message: str = "", headers: Mapping[str, str] | None = None
) -> Step:
    body = {"data": {}, "error": {"code": code, "message": message, "log_id": "L2"}}
    return answer(status, body, headers)


def raw(status: int, body: bytes, content_type: str = "text/html") -> Step:
    async def step(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, status=status, content_type=content_type)

    return step


def slow(seconds: float, then: Step) -> Step:
    async def step(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return await then(request)

    return step


def reset() -> Step:
    async def step(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.abort()
        return web.Response()

    return step


def cut_short() -> Step:
    """Content-Length promises more than is sent before the connection closes."""

    async def step(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.content_length = 1000
        await resp.prepare(request)
        await resp.write(b'{"data": {"videos": [')
        assert request.transport is not None
        request.transport.abort()
        return resp

    return step


@dataclass
class FakeApi:
    base_url: str = ""
    steps: defaultdict[str, deque[Step]] = field(default_factory=lambda: defaultdict(deque))
    defaults: dict[str, Step] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    tokens_issued: int = 0
    token_ttl: int = 7200
    token_delay: float = 0.0

    def script(self, path: str, *steps: Step) -> None:
        self.steps[path].extend(steps)

    def calls(self, path: str) -> list[dict[str, Any]]:
        return [orjson.loads(b) for p, _, b in self.requests if p == path]

    def count(self, path: str) -> int:
        return sum(1 for p, _, _ in self.requests if p == path)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append((request.path, dict(request.headers), body))
        queue = self.steps[request.path]
        if queue:
            return await queue.popleft()(request)
        if request.path == "/v2/oauth/token/":
            return await self._token(request)
        if request.path in self.defaults:
            return await self.defaults[request.path](request)
        return await err(404, "not_found", "no route")(request)

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if form.get("client_secret") != SECRET or form.get("client_key") != KEY:
            return await answer(
                401, {"error": "invalid_client", "error_description": "bad", "log_id": "x"}
            )(request)
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        self.tokens_issued += 1
        body = {
            "access_token": f"clt.tok{self.tokens_issued}-{SECRET[:3]}",
            "expires_in": self.token_ttl,
            "token_type": "Bearer",
        }
        return await answer(200, body)(request)

    def bearer(self, index: int) -> str | None:
        return self.requests[index][1].get("Authorization")


@asynccontextmanager
async def running_fake() -> AsyncIterator[FakeApi]:
    api = FakeApi()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", api.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    api.base_url = f"http://127.0.0.1:{port}"
    try:
        yield api
    finally:
        await runner.cleanup()
