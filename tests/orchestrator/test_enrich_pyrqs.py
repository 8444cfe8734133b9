"""A pyrqs study's enrichments end to end: every kind through its VCE category, via the SDK
backend (the drop-in standing for TikTok's SDK) against the simulator, equal to the endpoint's
oracle target by target; refused accounts recorded as `empty`; status saying so; the test
stage's sample; a run SIGKILLed after its task was created polls that task when resumed."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
import tomli_w

from harvester.config import Study, load_study, loads_study, resolve_credentials
from harvester.kinds import KINDS
from harvester.orchestrator import harvest, plan_report, status_report
from harvester.orchestrator._enrich import open_enrich_state
from harvester.orchestrator._enrich_reports import status_lines
from harvester.simulator import vce
from harvester.simulator.app import Simulator
from harvester.simulator.testing import running_simulator
from tests.orchestrator.conftest import FAST_TASKS, SIM, options, study_text
from tests.orchestrator.test_enrich import (
    VERDICTS,
    VIDEO_FIELDS,
    expected_rows,
    read,
    video_targets,
)
from tests.orchestrator.test_vce import drop_in, standin_pyrqs  # noqa: F401 - a fixture

pytestmark = pytest.mark.anyio

BLOCKS: list[dict[str, Any]] = [
    {"kind": "comments", "where": "comment_count >= 3", "replies": True, "max_per_target": 20},
    {"kind": "users"},
    {"kind": "followers", "where": "region_code = 'NL'"},
    {"kind": "following", "where": "region_code = 'NL'"},
    {"kind": "liked_videos", "where": "region_code = 'DE'"},
    {"kind": "pinned_videos"},
    {"kind": "reposted_videos", "where": "region_code = 'GB'"},
    {"kind": "playlists"},
]


def pyrqs_study(tmp_path: Path, base_url: str, blocks: list[dict[str, Any]], **kw: Any) -> Study:
    kw.setdefault("fields", VIDEO_FIELDS)
    doc = tomllib.loads(study_text(base_url, source="pyrqs", days=1, **kw))
    text = tomli_w.dumps({**doc, "enrich": blocks})
    path = tmp_path / "study.toml"
    path.write_text(text)
    return loads_study(text, path)


def assert_kind_equals_oracle(
    sim: Simulator, study: Study, kind_name: str, targets: list[Any], **kw: Any
) -> tuple[int, int]:
    """The kind's dataset holds exactly the oracle's rows per target, each once; a target the
    API refuses is done with the outcome `empty`. Returns (rows, empty targets)."""
    kind = KINDS[kind_name]
    e = next(x for x in study.enrichments if x.kind == kind_name)
    expected, verdicts = expected_rows(sim, kind_name, targets, **kw)
    renames = dict(kind.renames)
    data = [n for n, _ in kind.columns]
    got = sorted(orjson.dumps({c: r[c] for c in data}) for r in read(e.output_path))
    want = sorted(
        orjson.dumps({kind.target: t} | {renames.get(k, k): v for k, v in r.items()})
        for t, rows in expected.items()
        for r in rows
    )
    assert got == want, kind_name
    assert {r["_source"] for r in read(e.output_path)} <= {"pyrqs"}
    es = open_enrich_state(study)
    try:
        outcomes = {str(t): es.target(kind_name, str(t)).outcome for t in targets}
    finally:
        es.close()
    assert all(outcomes[str(t)] == "empty" for t in verdicts), kind_name
    assert all(outcomes[str(t)] == ("ok" if rows else "empty") for t, rows in expected.items())
    return len(want), sum(1 for o in outcomes.values() if o == "empty")


async def test_every_kind_through_the_sdk_equals_the_oracle(tmp_path: Path) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS, faults=VERDICTS) as sim:
        study = pyrqs_study(tmp_path, sim.base_url, BLOCKS)
        # Before anything ran, plan counts VCE tasks (a create and a result page each).
        for item in plan_report(study)["enrichments"]:
            tasks = math.ceil(item["targets_left"] / 100)
            assert item["estimated_requests"] == 2 * tasks, item
            assert "pyrqs: one VCE task per 100 targets" in item["basis"]
        credentials = resolve_credentials(study, {})
        with drop_in(sim) as sdk:
            code = await harvest(study, credentials, options(sdk_client=sdk), clock=sim.clock.now)
        assert code == 0
        figures = {}
        for block in BLOCKS:
            name = block["kind"]
            kind = KINDS[name]
            targets = [
                t for t in video_targets(study, kind.source_column, block.get("where", "true")) if t
            ]
            kw = {k: block[k] for k in ("replies", "max_per_target") if k in block}
            figures[name] = (
                len(targets),
                *assert_kind_equals_oracle(sim, study, name, targets, **kw),
            )
        tasks = sum(n for c, n in sim.stats.responses["rqs.create"].items() if c == 200)
        report = status_report(study)
    print("pyrqs per kind (targets, rows, empty):", figures, "tasks created:", tasks)
    assert any(empty for _, _, empty in figures.values())  # refused accounts were met
    lines = {item["kind"]: item for item in report["enrichments"]}
    assert lines["users"]["outcomes"].get("empty", 0) == figures["users"][2]
    # One task a batch of up to 100 targets: the users' 65 took one, and status says so.
    assert (lines["users"]["requests_answered"], lines["users"]["answered_as"]) == (1, "tasks")
    text = dict(status_lines(report["enrichments"]))["enrich users"]
    assert "1 tasks answered" in text and "empty: the VCE's task gave the target no rows" in text


async def test_test_stage_enrichments_keep_popular_creators_in_the_days_share(
    tmp_path: Path,
) -> None:
    async with running_simulator("clean", **SIM, **FAST_TASKS, stage="test") as sim:
        study = pyrqs_study(
            tmp_path, sim.base_url, [{"kind": "users"}], stage="test", daily_records=1_000
        )
        with drop_in(sim) as sdk:
            code = await harvest(
                study, resolve_credentials(study, {}), options(sdk_client=sdk), clock=sim.clock.now
            )
        assert code == 0
        names = video_targets(study, "username")
        got = {r["username"] for r in read(study.enrichments[0].output_path)}
        popular = {n for n in names if vce.followers(sim.corpus, n) >= vce.MIN_FOLLOWERS}
        assert got and got <= popular
        assert all(
            r["follower_count"] >= vce.MIN_FOLLOWERS for r in read(study.enrichments[0].output_path)
        )


def _events(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue  # the line being written when the run was killed
    return out


def _cli(config: Path, log: Path, vce_env: dict[str, str], sdk: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIKTOK_")}
    repo = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join((str(sdk), repo))
    return subprocess.Popen(
        [sys.executable, "-m", "harvester.cli", "run", str(config), "--no-progress",
         "--log-file", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**env, **vce_env},
    )  # fmt: skip


def _kill_after_task_noted(proc: subprocess.Popen[bytes], log: Path) -> list[int]:
    """SIGKILL the run once an enrichment task's id is checkpointed; the ids noted."""
    started = time.monotonic()
    while time.monotonic() - started < 120:
        noted = [e["task_id"] for e in _events(log) if e.get("event") == "task_noted"]
        if noted:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return noted
        assert proc.poll() is None, "the run ended before its enrichment task was noted"
        time.sleep(0.005)
    raise AssertionError("no enrichment task was noted")


@pytest.mark.slow
async def test_a_sigkilled_enrichment_polls_its_task_when_resumed(
    tmp_path: Path,
    standin_pyrqs: Path,  # noqa: F811 - the fixture
) -> None:
    # Category tasks take a second: the kill lands while the noted task still runs.
    async with running_simulator("clean", **SIM, **{**FAST_TASKS, "rqs_processing": 1.0}) as sim:
        study = pyrqs_study(tmp_path, sim.base_url, [{"kind": "followers"}])
        config = tmp_path / "study.toml"
        vce_env = {"VCE_GATEWAY": sim.base_url, "VCE_KEY": "sim-client-key",
                   "VCE_SECRET": "sim-client-secret"}  # fmt: skip
        first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
        proc = _cli(config, first, vce_env, standin_pyrqs)
        noted = await anyio.to_thread.run_sync(lambda: _kill_after_task_noted(proc, first))
        assert proc.returncode == -signal.SIGKILL
        again = _cli(config, second, vce_env, standin_pyrqs)
        _, err = await anyio.to_thread.run_sync(again.communicate)
        assert again.returncode == 0, err.decode()[-2000:]
        events = _events(second)
        fetched = {e["task_id"] for e in events if e.get("event") == "task_fetched"}
        created = {e["task_id"] for e in events if e.get("event") == "task_noted"}
        assert set(noted) <= fetched and not set(noted) & created  # polled, not created again
        study = load_study(config)
        targets = video_targets(study, "username")
        assert assert_kind_equals_oracle(sim, study, "followers", targets)[0] > 0
