"""Hostile data and secrets: a hostile API cannot make the run write outside its folders, crash
or split the schema, and no secret or token reaches a log, the state, the dataset or an error.
TLS verification stays on for real hosts; the simulator listens on loopback only."""

from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pyarrow.parquet as pq
import pytest

from harvester import ConfigError
from harvester.api import ApiSession, Credentials
from harvester.config import loads_study
from harvester.orchestrator import status_report
from harvester.simulator import running_simulator
from harvester.simulator.app import Simulator
from tests.reliability._study import SIM, dataset_ids, oracle, study_text, write_study
from tests.reliability.conftest import HARVESTER, ROOT, SIM_ENV

HOSTILE_FIELDS = (
    "id",
    "create_time",
    "username",
    "region_code",
    "video_description",
    "voice_to_text",
    "hashtag_names",
    "effect_ids",
    "like_count",
    "view_count",
    "comment_count",
    "share_count",
    "hashtag_info_list",
    "video_mention_list",
)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _record_tokens(sim: Simulator) -> list[str]:
    """Every token the simulator issues (revoked ones leave `sim.tokens`)."""
    issued: list[str] = []
    issue: Callable[[], str] = sim.issue_token

    def recording() -> str:
        token = issue()
        issued.append(token)
        return token

    sim.issue_token = recording  # type: ignore[method-assign]
    return issued


async def _run_cli(
    config: Path, env: dict[str, str], *extra: str
) -> subprocess.CompletedProcess[bytes]:
    return await anyio.run_process(
        [*HARVESTER, "run", str(config), "--no-progress", *extra], env=env, check=False
    )


@pytest.mark.slow
@pytest.mark.anyio
async def test_hostile_api_stays_inside_its_folders_and_no_secret_leaks(tmp_path: Path) -> None:
    secret = "s3cret-" + secrets.token_hex(12)
    work = tmp_path / "deep" / "er" / "work"  # so "../../x" from a partition stays in tmp_path
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    env = {**SIM_ENV, "TIKTOK_CLIENT_SECRET": secret, "TMPDIR": str(private_tmp)}
    faults = {
        "token_expiry": 0.05,
        "http_500": 0.05,
        "extra_fields": 0.3,
        "hostile_values": 0.2,
        "wrong_types": 0.2,
        "control_chars": 0.3,
    }
    async with running_simulator(
        "hostile", **{**SIM, "token_ttl": 2.0}, client_secret=secret, faults=faults
    ) as sim:
        tokens = _record_tokens(sim)
        text = study_text(
            sim.base_url,
            name="hostile",
            days=6,
            window=2,
            fields=HOSTILE_FIELDS,
            partition_by=("region_code", "create_month"),
        )
        config, study = write_study(work, text)
        before = _tree(tmp_path)
        log = work / "run.jsonl"
        done = await _run_cli(config, env, "--log-file", str(log))
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        truth = oracle(sim, study)
        fired = dict(sim.stats.faults)

        # An error message too: the same run with a wrong secret fails on one line, naming the
        # variables, never the value.
        wrong = "wr0ng-" + secrets.token_hex(12)
        refused_config, _ = write_study(
            work / "refused", text.replace('name = "hostile"', 'name = "refused"')
        )
        bad_log = work / "bad.jsonl"
        wrong_env = {**env, "TIKTOK_CLIENT_SECRET": wrong}
        refused = await _run_cli(refused_config, wrong_env, "--log-file", str(bad_log))
        verify = await anyio.run_process([*HARVESTER, "verify", str(config)], env=env, check=False)
    assert fired.get("hostile_values") and fired.get("extra_fields") and fired.get("wrong_types")
    assert tokens, "the simulator issued no token"

    # Nothing outside the dataset root and the state's own files; nothing in TMPDIR.
    state = study.state_path
    own = (study.output_path, state.parent / (state.name + ".logs"))
    for rel in _tree(tmp_path) - before:
        path = tmp_path / rel
        beside_state = path.is_relative_to(state.parent) and path.relative_to(state.parent).parts[
            0
        ].startswith(state.name)  # the state, its journal, lock, logs and staging
        ok = any(path.is_relative_to(p) for p in own) or beside_state
        ok = ok or path in (log, bad_log) or path.is_relative_to(work / "refused")
        assert ok, f"written outside the dataset and state: {path}"
    assert not any(private_tmp.iterdir())

    # One schema in every file, hostile values kept as values, unknown fields in _extra.
    files = sorted(study.output_path.rglob("*.parquet"))
    assert files
    schemas = {pq.read_schema(f).remove_metadata().to_string() for f in files}
    assert len(schemas) == 1, schemas
    got = dataset_ids(study.output_path)
    assert len(got) == len(set(got)) and set(got) <= truth
    events = [json.loads(line) for line in log.read_text().splitlines()]
    kept = [e for e in events if e["event"] == "unknown_fields_kept"]
    assert kept, "unknown fields were neither kept nor reported"
    import duckdb

    con = duckdb.connect()
    extra = con.execute(
        "SELECT count(*) FROM read_parquet(?, hive_partitioning = true) "
        "WHERE _extra LIKE '%unannounced_%'",
        [str(study.output_path / "**" / "*.parquet")],
    ).fetchone()
    con.close()
    assert extra is not None and extra[0] > 0
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # The refused run: exit 1, one line, the variable named, the wrong value nowhere.
    err = refused.stderr.decode()
    assert refused.returncode == 1
    assert "TIKTOK_CLIENT_SECRET" in err and wrong not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("harvester: error: the API refused the credentials"), last
    assert last.endswith("check TIKTOK_CLIENT_KEY and TIKTOK_CLIENT_SECRET"), last
    # The windows wait for the right credentials: none is parked.
    assert status_report(loads_study(refused_config.read_text(), refused_config))["parked"] == []

    # No secret or token anywhere: logs, stderr, state bytes, every dataset byte and footer.
    needles = [secret, wrong, *tokens]
    haystacks: dict[str, bytes] = {
        "stdout": done.stdout,
        "stderr": done.stderr,
        "refused stderr": refused.stderr,
        "refused stdout": refused.stdout,
        "verify": verify.stdout + verify.stderr,
    }
    for path in [p for p in work.rglob("*") if p.is_file() and p.name != "study.toml"]:
        haystacks[str(path)] = path.read_bytes()
    for f in files:
        meta = pq.read_metadata(f)
        haystacks[f"{f} metadata"] = repr(meta.metadata).encode() + str(meta.schema).encode()
    assert any(str(p).endswith(".sqlite") for p in haystacks)
    assert any(str(p).endswith(".jsonl") for p in haystacks)
    for where, data in haystacks.items():
        for needle in needles:
            assert needle.encode() not in data, f"a secret or token leaked into {where}"


def test_tls_verification_stays_on_for_real_hosts(tmp_path: Path) -> None:
    # The session's connector verifies certificates and host names by default.
    async def connector_ssl() -> Any:
        async with ApiSession("https://open.tiktokapis.com", Credentials("k", "s")) as s:
            connector = s._client().connector
            assert isinstance(connector, aiohttp.TCPConnector)
            return connector._ssl

    context = anyio.run(connector_ssl)
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    for source in (ROOT / "harvester").rglob("*.py"):
        text = source.read_text()
        for off in ("ssl=False", "verify_ssl=False", "CERT_NONE", "check_hostname = False"):
            assert off not in text, f"{source} disables TLS verification ({off})"
    # The study refuses verify_tls = false for anything but loopback.
    base = study_text("https://open.tiktokapis.com").replace(
        "retry_wait_s = 0.01", "retry_wait_s = 0.01\nverify_tls = false"
    )
    with pytest.raises(ConfigError, match=r"api\.verify_tls: may be false only for a loopback"):
        loads_study(base, tmp_path / "s.toml")
    loads_study(
        base.replace("https://open.tiktokapis.com", "http://127.0.0.1:9"), tmp_path / "s.toml"
    )


def _outward_address() -> str | None:
    """An address of this machine other than loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET: nothing is sent
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else str(address)


def test_the_simulator_listens_on_loopback_only(chaos: Any, tmp_path: Path) -> None:
    sim = chaos.Simulator(tmp_path, "clean", 1)
    try:
        assert sim.url.startswith("http://127.0.0.1:")
        port = int(sim.url.rsplit(":", 1)[1])
        outward = _outward_address()
        if outward is not None:
            with pytest.raises(OSError), socket.create_connection((outward, port), timeout=2):
                pass
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        sim.close()
    help_text = subprocess.run(
        [*HARVESTER, "simulate", "--help"], capture_output=True, text=True, env=dict(os.environ)
    ).stdout
    assert "127.0.0.1" in help_text and "Loopback unless told" in help_text
