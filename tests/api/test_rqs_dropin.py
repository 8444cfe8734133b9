"""`from harvester import rqs`: the SDK's blocking surface, and the seed's own sample programs."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import anyio
import pytest

from harvester import CredentialsError, rqs
from harvester.simulator.testing import running_simulator

SAMPLES = Path(__file__).parent / "samples"
ENV = {"TIKTOK_CLIENT_KEY": "sim-client-key", "TIKTOK_CLIENT_SECRET": "sim-client-secret"}


@pytest.mark.parametrize(
    "missing", ["TIKTOK_API_BASE_URL", "TIKTOK_CLIENT_KEY", "TIKTOK_CLIENT_SECRET"]
)
def test_missing_environment_names_the_variable(missing: str) -> None:
    env = {**ENV, "TIKTOK_API_BASE_URL": "http://127.0.0.1:9"}
    del env[missing]
    with pytest.raises(CredentialsError) as info:
        rqs.RQSClient(environ=env)
    assert missing in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.anyio
async def test_blocking_methods_from_a_thread() -> None:
    groups = [
        {
            "operator": "and",
            "conditions": [{"field": "region_code", "operator": "eq", "field_values": ["NL"]}],
        },
        {
            "operator": "and",
            "conditions": [
                {"field": "create_time", "operator": "lt", "field_values": ["1641081600"]}
            ],
        },
    ]
    async with running_simulator("clean", seed=2) as sim:

        def script() -> tuple[int, str, str, bool]:
            with rqs.RQSClient(environ={**ENV, "TIKTOK_API_BASE_URL": sim.base_url}) as client:
                task = client.create_query_task("video", groups, "id,username,region_code", 50)
                status = client.check_query_task_status(task)
                while status not in ("Completed", "AnalysisFailed", "Cancelled"):
                    time.sleep(0.05)
                    status = client.check_query_task_status(task)
                records = client.get_query_task_result(task)
                cancelled = client.cancel_query_task(task)
                return task, status, records, cancelled

        _task, status, text, cancelled = await anyio.to_thread.run_sync(script)
    assert status == "Completed"
    # The seed gives the result the type string: JSON text of the records, ids exact.
    assert isinstance(text, str)
    records = json.loads(text)
    assert 0 < len(records) <= 50
    assert all(isinstance(r["id"], int) and r["id"] > 2**62 for r in records)
    assert all(r["region_code"] == "NL" for r in records)
    assert cancelled is False  # a completed task cannot be cancelled


async def _run_sample(name: str, base_url: str) -> tuple[int, str, str]:
    env = {**os.environ, **ENV, "TIKTOK_API_BASE_URL": base_url}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")])
    proc = await anyio.run_process([sys.executable, str(SAMPLES / name)], env=env, check=False)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


@pytest.mark.slow
@pytest.mark.anyio
async def test_the_seed_sample_programs_run_unchanged() -> None:
    async with running_simulator("clean", seed=1) as sim:
        code, out, err = await _run_sample("sample_create.py", sim.base_url)
        assert code == 0, err
        assert sim.stats.tasks_created == 1

        code, out, err = await _run_sample("sample_query.py", sim.base_url)
        assert code == 0, err
        assert out.startswith("[{") and '"username"' in out and "video_sticker_id" in out
        assert isinstance(json.loads(out), list)
        assert "sim-client-secret" not in out + err


@pytest.mark.anyio
async def test_other_vce_categories_serve_their_rows_and_bad_ones_are_refused_first() -> None:
    """Fact 14: the VCE's categories beyond video pass through the drop-in, their rows as the
    enrichment dataset names them (`video_id` stays the comment's key, not a video id)."""
    from harvester import QueryError
    from harvester.kinds import KINDS

    async with running_simulator("clean", seed=2) as sim:
        comments = KINDS["comments"]
        videos = [v["id"] for v in sim.corpus.videos(1677628800, 1677715200)][:40]
        videos = [v for v in videos if sim.corpus.get(v)["comment_count"]][:3]  # type: ignore[index]

        def script() -> list[dict[str, object]]:
            with rqs.RQSClient(environ={**ENV, "TIKTOK_API_BASE_URL": sim.base_url}) as client:
                text = client.query(
                    category="comment",
                    condition_groups=comments.condition_groups(videos),
                    fields="id,text,parent_comment_id",
                    limit=10_000,
                )
                for category, fields, says in (
                    ("hashtags", "id", "unknown category 'hashtags'"),
                    ("comment", "colour", r"unknown or no field\(s\) colour"),
                ):
                    with pytest.raises(QueryError, match=says):
                        client.query(category=category, condition_groups=[{}], fields=fields)
                out: list[dict[str, object]] = json.loads(text)
                return out

        got = await anyio.to_thread.run_sync(script)
        want = []
        for v in videos:
            rows = sim.enrich.expected("comments", v, replies=True)
            assert isinstance(rows, list)
            want += [
                {"video_id": v} | {k: r[k] for k in ("id", "text", "parent_comment_id")}
                for r in rows
            ]
        assert want and got == want
