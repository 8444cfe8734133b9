"""The live display in a real terminal: `harvester run` in a pseudo-terminal, its bytes played
on a terminal emulator (pyte) with scrollback, and the screen read as a user would.

A run whose pages carry unknown fields logs a warning per page, and one with 500s grows an
"errors" row mid-run: the frame must stay one frame, redrawn in place, with every warning
printed above it.
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import anyio
import pyte
import pytest

from harvester.simulator.testing import running_simulator
from tests.orchestrator.conftest import SIM, SIM_ENV, make_study

pytestmark = pytest.mark.anyio

COLS, ROWS = 110, 30


def run_in_pty(*args: str, timeout: float = 120.0) -> tuple[int, bytes]:
    """`harvester ARGS` with a pseudo-terminal as its stdin, stdout and stderr."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    env = {**os.environ, **SIM_ENV, "TERM": "xterm-256color"}
    for name in ("COLUMNS", "LINES", "NO_COLOR", "TERM_PROGRAM"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harvester.cli", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    out = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child has gone and closed its end
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(timeout), bytes(out)


def screen_lines(raw: bytes) -> list[str]:
    """Scrollback then screen, as the terminal shows them after the run."""
    screen = pyte.HistoryScreen(COLS, ROWS, history=100_000)
    pyte.ByteStream(screen).feed(raw)
    scrolled = ["".join(line[x].data for x in range(COLS)).rstrip() for line in screen.history.top]
    return [*scrolled, *(line.rstrip() for line in screen.display)]


@pytest.mark.slow
async def test_the_live_display_holds_with_warnings_in_a_real_terminal(tmp_path: Path) -> None:
    faults = {"extra_fields": 0.2, "http_500": 0.08}
    async with running_simulator("clean", **{**SIM, "latency": 0.15}, faults=faults) as sim:
        make_study(tmp_path, sim.base_url, source="research-api", days=10, window=1)
        config = str(tmp_path / "study.toml")
        code, raw = await anyio.to_thread.run_sync(lambda: run_in_pty("run", config))
    lines = screen_lines(raw)
    text = "\n".join(lines)
    assert code == 0, text
    # Frames were drawn (the cursor went up to redraw them), and one frame is left: the title
    # and every row of the table appear exactly once, at the bottom.
    assert b"\x1b[1A" in raw or b"\x1b[2K" in raw
    titles = [i for i, line in enumerate(lines) if "harvesting e2e" in line]
    assert len(titles) == 1, text
    for row in ("shards ", "records ", "requests ", "eta "):
        assert sum(1 for line in lines if line.strip().startswith(row)) == 1, (row, text)
    # The errors row grew the frame mid-run and is in the last frame too.
    assert sum(1 for line in lines if line.strip().startswith("errors ")) == 1, text
    # Every warning is a whole line above the frame, none inside it or torn across it.
    warnings = [i for i, line in enumerate(lines) if line.startswith("warning: ")]
    assert len(warnings) >= 3, text
    assert max(warnings) < titles[0], text
    assert all("unknown_fields_kept" in lines[i] for i in warnings), text
    assert not any("warning" in line for line in lines[titles[0] :]), text
