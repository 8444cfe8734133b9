"""Bad input through the real CLI: every mistake is exit 2 and one line naming the key and the
fix, never a traceback; none sends a request or touches an existing dataset.

The corpus is tests/test_config.py's loader table (run here through `harvester run` and
`harvester plan`) plus what only the CLI sees: files, paths, credentials, a study changed under
its state. Each case runs beside a finished dataset of the valid study, against a simulator.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from harvester.cli import main
from tests.reliability.conftest import SIM_ENV, harvester
from tests.test_config import INVALID, NL, REST_NL, toml

#: Cases the loader table cannot hold: (id, toml changes or raw text, key, expected).
CLI_ONLY: list[tuple[str, str, str, str]] = [
    ("bad utf-8", "\udcff", "study.toml", "not UTF-8"),
    ("empty file", "", "[study]", "table is missing"),
    ("binary junk", "\x00\x01\x02", "study.toml", "TOML syntax"),
    ("reversed window order", toml(study__window='"-7d"'), "study.window", "from 1 to 30"),
    ("window 45d public", toml(study__window='"45d"'), "study.window", "from 1 to 30"),
    (
        "rest operator LIKE",
        toml(study__condition_groups=None, study__query=REST_NL.replace('"EQ"', '"LIKE"')),
        "study.query",
        "LIKE",
    ),
    (
        "seed operator on number",
        toml(study__condition_groups=NL.replace('"eq"', '"like"')),
        "study.condition_groups[0].conditions[0]",
        "'like' is not allowed for region_code",
    ),
    ("limit negative", toml(study__source='"rqs"', study__limit="-1"), "study.limit", ""),
    ("timeout zero", toml(api__timeout_s="0"), "api.timeout_s", "more than 0"),
    ("retry wait zero", toml(api__retry_wait_s="0"), "api.retry_wait_s", "more than 0"),
    ("attempts string", toml(api__max_attempts='"8"'), "api.max_attempts", "an integer"),
    ("date as number", toml(study__start_date="20230101"), "study.start_date", "YYYY-MM-DD"),
    # Nothing positive left to send: the public API would return every video of the dates.
    (
        "full scan, rest form",
        toml(
            study__condition_groups=None,
            study__query='{not = [{operation = "EQ", field_name = "username", '
            'field_values = ["spam"]}]}',
        ),
        "study.query",
        "nothing positive is left to send to the public API",
    ),
    (
        "full scan, seed form",
        toml(study__condition_groups=NL.replace('"and"', '"not"')),
        "study.condition_groups",
        "set allow_full_scan = true in [study]",
    ),
]


def _digest_tree(root: Path) -> dict[str, str]:
    """Bytes of the dataset (`t/`) and of the state database: what no bad input may touch.
    The run lock and the logs folder beside them are a run's bookkeeping, not data."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and (p.is_relative_to(root / "t") or p.name.startswith("t.state.sqlite"))
        and not p.name.endswith(".lock")
        and ".logs" not in p.parent.name
    }


@pytest.fixture(scope="module")
def finished(
    clean_sim: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, str, Any]]:
    """A folder holding the valid study's finished dataset and state, and the study text."""
    folder = tmp_path_factory.mktemp("bad-input")
    text = toml(
        study__start_date='"2023-01-01"',
        study__end_date='"2023-01-10"',
        study__window='"5d"',
        api__base_url=f'"{clean_sim.url}"',
        api__retry_wait_s="0.01",
    )
    (folder / "study.toml").write_text(text)
    done = harvester("run", str(folder / "study.toml"), "--no-progress")
    assert done.returncode == 0, done.stderr
    yield folder, text, clean_sim


def _requests(sim: Any) -> int:
    stats = sim.get("/_sim/stats")
    return sum(sum(codes.values()) for codes in stats["responses"].values())


def _with_sim(text: str, url: str) -> str:
    # Were the config accepted, the run would talk to the simulator: and be counted.
    return text.replace("http://127.0.0.1:8765", url)


CORPUS = [(c[0], c[1], c[2], c[3]) for c in INVALID] + CLI_ONLY


@pytest.mark.parametrize("command", ["run", "plan"])
def test_every_bad_config_is_exit_2_one_line_no_request_no_touch(
    finished: tuple[Path, str, Any], command: str
) -> None:
    folder, _valid, sim = finished
    config = folder / "study.toml"
    valid_text = config.read_text()
    dataset = _digest_tree(folder / "out")
    requests = _requests(sim)
    runner = CliRunner()
    tried = 0
    try:
        for case, text, key, expected in CORPUS:
            if "\udcff" in text:
                config.write_bytes(b'[study]\nname = "caf\xe9"\n')
            else:
                config.write_text(_with_sim(text, sim.url))
            args = [command, str(config)] + (["--no-progress"] if command == "run" else [])
            result = runner.invoke(main, args, env=SIM_ENV)
            assert isinstance(result.exception, SystemExit), (case, result.exception)
            assert result.exit_code == 2, (case, result.output)
            _check_line(result.stderr, key, expected, case)
            tried += 1
    finally:
        config.write_text(valid_text)
    assert tried == len(CORPUS) >= 60
    assert _requests(sim) == requests, "a bad config made a request"
    assert _digest_tree(folder / "out") == dataset, "a bad config touched the dataset"


def _check_line(stderr: str, key: str, expected: str, case: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, (case, stderr)
    line = lines[0]
    assert line.startswith("harvester: error: "), (case, line)
    assert key in line and expected in line, (case, line)
    assert "; " in line and line.rsplit("; ", 1)[1].strip(), (case, line)


def _subprocess_case(
    folder: Path, sim: Any, args: list[str], env: dict[str, str] | None = None
) -> str:
    before_requests = _requests(sim)
    before = _digest_tree(folder / "out")
    done = harvester(*args, env=env)
    assert done.returncode == 2, (args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("harvester: error: "), done.stderr
    assert _requests(sim) == before_requests
    assert _digest_tree(folder / "out") == before
    return lines[0]


@pytest.mark.slow
def test_what_only_a_real_process_sees(finished: tuple[Path, str, Any], tmp_path: Path) -> None:
    """Files, paths, credentials and a changed study, through `harvester` in its own process."""
    folder, valid, sim = finished
    config = folder / "study.toml"
    text = _with_sim(valid, sim.url)

    # The study file itself: missing, a folder, under a file.
    line = _subprocess_case(folder, sim, ["run", str(folder / "nope.toml")])
    assert "no such file; check the path" in line
    line = _subprocess_case(folder, sim, ["plan", str(folder)])
    assert "is a folder; give the path to a .toml study file" in line
    line = _subprocess_case(folder, sim, ["run", str(config / "x.toml")])
    assert "cannot read the study file" in line and "check its permissions" in line

    # Missing credentials: named by variable, and how to set them.
    env = {k: v for k, v in SIM_ENV.items() if k != "TIKTOK_CLIENT_SECRET"}
    line = _subprocess_case(folder, sim, ["run", str(config), "--no-progress"], env=env)
    assert "api.client_secret_env" in line and "export TIKTOK_CLIENT_SECRET=" in line

    # Output and state paths that cannot be created.
    (tmp_path / "afile").write_text("x")
    other = tmp_path / "other.toml"
    other.write_text(text.replace('path = "out/t"', f'path = "{tmp_path}/afile/data"'))
    line = _subprocess_case(folder, sim, ["run", str(other), "--no-progress"])
    assert "output.path" in line and "choose another path" in line
    other.write_text(text + f'[state]\npath = "{tmp_path}/afile/s.sqlite"\n')
    line = _subprocess_case(folder, sim, ["run", str(other), "--no-progress"])
    assert "state.path" in line and "choose another path" in line

    # A study changed under its existing state: refused until --replan, state untouched.
    state = folder / "out" / "t.state.sqlite"
    assert state.exists()
    digest = hashlib.sha256(state.read_bytes()).hexdigest()
    config.write_text(text.replace('"2023-01-10"', '"2023-01-12"'))
    try:
        line = _subprocess_case(folder, sim, ["run", str(config), "--no-progress"])
    finally:
        config.write_text(text)
    assert "--replan" in line
    assert hashlib.sha256(state.read_bytes()).hexdigest() == digest


@pytest.mark.slow
def test_an_unwritable_output_is_refused_before_any_request(
    finished: tuple[Path, str, Any], tmp_path: Path
) -> None:
    """A read-only filesystem (root ignores permission bits, not a read-only mount)."""
    folder, valid, sim = finished
    ro = tmp_path / "ro"
    ro.mkdir()
    if not _mount(["-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(ro)]):
        pytest.skip("cannot mount a read-only filesystem here")
    try:
        other = tmp_path / "ro.toml"
        text = _with_sim(valid, sim.url)
        other.write_text(text.replace('path = "out/t"', f'path = "{ro}/data"'))
        line = _subprocess_case(folder, sim, ["run", str(other), "--no-progress"])
        assert "output.path" in line and "writable" in line
    finally:
        assert _mount([str(ro)], "umount"), f"could not unmount {ro}"


def _mount(args: list[str], tool: str = "mount") -> bool:
    if os.geteuid() != 0:
        return False
    try:
        return subprocess.run([tool, *args], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
