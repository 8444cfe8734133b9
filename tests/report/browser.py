"""Headless Chromium driven over the DevTools protocol, for the report tests and the README's
screenshot (`scripts/screenshot.py`).

The protocol runs on a pipe (`--remote-debugging-pipe`: JSON messages ended by NUL on file
descriptors 3 and 4 of the browser), so there is no port to pick or to leak and nothing else on
the machine can talk to the browser. A page is opened with every JavaScript exception, console
error and network request recorded, so a test can say "it loaded without an error and asked no
other host for anything" and read what the page drew.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = ["BrowserError", "Chromium", "Page", "find_chromium"]


class BrowserError(RuntimeError):
    pass


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Page:
    """An open tab: what went wrong while it loaded, what it asked for, and a way to ask it."""

    browser: Chromium
    session: str
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """The value of a JavaScript expression (awaited if it is a promise)."""
        result = self.browser.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=self.session,
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {_describe(result['exceptionDetails'])}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {expression!r}; errors: {self.errors}")
            self.browser.pump(0.05)

    def screenshot(self, width: int | None = None) -> bytes:
        """The whole page (not only the viewport) as PNG bytes."""
        metrics = self.browser.call("Page.getLayoutMetrics", session=self.session)
        size = metrics["cssContentSize"]
        clip = {
            "x": 0,
            "y": 0,
            "width": width or size["width"],
            "height": size["height"],
            "scale": 1,
        }
        shot = self.browser.call(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": clip},
            session=self.session,
            timeout=60,
        )
        return base64.b64decode(shot["data"])


class Chromium:
    """One headless browser for the block's duration: `with Chromium() as browser: ...`."""

    def __init__(self, *, width: int = 1280, height: int = 900) -> None:
        executable = find_chromium()
        if executable is None:
            raise BrowserError(
                "chromium is not installed: `make test` installs Debian's package "
                "(apt-get install chromium)"
            )
        self._profile = tempfile.TemporaryDirectory(prefix="harvester-chromium-")
        # Our ends of the two pipes; the browser's ends go to its fds 3 (commands in) and 4
        # (answers and events out). Moved above 9 so the shell's redirections cannot clash.
        to_browser, self._send = _high(os.pipe())
        self._recv, from_browser = _high(os.pipe())
        flags = [
            "--headless",
            "--remote-debugging-pipe",
            f"--user-data-dir={self._profile.name}",
            f"--window-size={width},{height}",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--mute-audio",
        ]
        if os.geteuid() == 0:
            flags.append("--no-sandbox")  # Chromium refuses to run its sandbox as root
        script = (
            f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser} {to_browser}<&- {from_browser}>&-'
        )
        # Closed in close(): the browser's output, for the message when it dies.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            # bash, not sh: dash only redirects descriptors 0 to 9.
            ["bash", "-c", script, executable, *flags, "about:blank"],
            pass_fds=(to_browser, from_browser),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict[str, Any]] = []
        self._pages: dict[str, Page] = {}
        try:
            self.call("Browser.getVersion", timeout=60)
        except BaseException:
            self.close()
            raise

    # -- the protocol -----------------------------------------------------------------------

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._send, data) :]
        deadline = time.monotonic() + timeout
        while True:
            for reply in self._read(deadline - time.monotonic()):
                if reply.get("id") == self._next_id:
                    if "error" in reply:
                        raise BrowserError(f"{method}: {reply['error'].get('message')}")
                    result: dict[str, Any] = reply.get("result", {})
                    return result
                self._event(reply)
            if time.monotonic() > deadline:
                raise BrowserError(f"{method}: no answer within {timeout:g} s")

    def pump(self, seconds: float) -> None:
        """Take in the events that arrive within `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for message in self._read(left):
                self._event(message)

    def _read(self, timeout: float) -> list[dict[str, Any]]:
        ready, _, _ = select.select([self._recv], [], [], max(0.0, timeout))
        if not ready:
            return []
        chunk = os.read(self._recv, 1 << 20)
        if not chunk:
            raise BrowserError(f"chromium exited: {self.output()[-2000:]}")
        self._buffer += chunk
        *messages, self._buffer = self._buffer.split(b"\0")
        return [json.loads(m) for m in messages if m]

    def _event(self, message: dict[str, Any]) -> None:
        page = self._pages.get(message.get("sessionId", ""))
        if page is None:
            return
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            page.errors.append("exception: " + _describe(params["exceptionDetails"]))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            page.errors.append(f"console.{params['type']}: {text}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            page.errors.append(f"log: {params['entry'].get('text')}")
        elif method == "Network.requestWillBeSent":
            page.requests.append(params["request"]["url"])
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            page.errors.append(f"load failed: {params.get('errorText')}")
        elif method == "Page.loadEventFired":
            page.browser._events.append({"loaded": message.get("sessionId")})

    # -- pages ----------------------------------------------------------------------------------

    def open(self, url: str, *, timeout: float = 60.0) -> Page:
        """Open `url` in a new tab and wait for its load event; errors and requests from the
        first byte on are recorded in the page."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        page = self._pages[session] = Page(self, session)
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=session)
        self._events.clear()
        answer = self.call("Page.navigate", {"url": url}, session=session, timeout=timeout)
        if answer.get("errorText"):
            raise BrowserError(f"cannot open {url}: {answer['errorText']}")
        deadline = time.monotonic() + timeout
        while {"loaded": session} not in self._events:
            if time.monotonic() > deadline:
                raise BrowserError(f"{url} did not finish loading within {timeout:g} s")
            self.pump(0.05)
        return page

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def close(self) -> None:
        for fd in (self._send, self._recv):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self._profile.cleanup()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _high(fds: tuple[int, int]) -> tuple[int, int]:
    """The pipe's two ends duplicated to descriptors above 9 (the originals closed)."""
    out = []
    for fd in fds:
        out.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10))
        os.close(fd)
    return out[0], out[1]


def _describe(details: dict[str, Any]) -> str:
    exception = details.get("exception") or {}
    where = f" at {details.get('url', '')}:{details.get('lineNumber', '?')}"
    return str(exception.get("description") or details.get("text", "?")) + where


def file_url(path: Path) -> str:
    return path.resolve().as_uri()
