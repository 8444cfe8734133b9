"""RqsEnrichClient: every kind through its VCE category over the HTTP binding to the simulator,
target by target equal to the endpoint's oracle; saturated batches split; a task created
before a restart polled, never created again; the SDK backend alike."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from harvester import rqs
from harvester.api import BatchDone, PollPolicy, PyrqsBackend, RqsClient, RqsEnrichClient
from harvester.kinds import KINDS
from harvester.simulator.app import Simulator
from harvester.simulator.corpus import DAY
from tests.api.conftest import RecordingHooks, sim_session

pytestmark = pytest.mark.anyio

POLL = PollPolicy(initial=0.001, maximum=0.01, timeout=10.0)
NOW: dict[str, Any] = {"rqs_created": 0.0, "rqs_validating": 0.0, "rqs_processing": 0.0}
VERDICTS = {"account_private": 0.1, "account_deleted": 0.05, "account_under_18": 0.05}
MAR1 = 1677628800
CREATE = "/v2/research/query_task/create/"


def targets_of(sim: Simulator, key: str, n: int) -> list[Any]:
    """`n` distinct targets from two days of the corpus."""
    out: list[Any] = []
    for v in sim.corpus.videos(MAR1, MAR1 + 2 * DAY):
        t = {"video_id": v["id"], "username": v["username"], "playlist_id": v["playlist_id"]}[key]
        if t and t not in out:
            out.append(t)
        if len(out) == n:
            break
    return out


def oracle(sim: Simulator, kind: str, targets: list[Any], **kw: Any) -> dict[Any, list[Any]]:
    """The rows the endpoint client stores per target; a refused target has none."""
    out = {}
    for t in targets:
        got = sim.enrich.expected(kind, t, **kw)
        out[t] = [] if isinstance(got, str) else got
    return out


async def fetch(client: RqsEnrichClient, targets: list[Any], **kw: Any) -> list[BatchDone]:
    return [done async for done in client.batches(targets, **kw)]


def merged(done: list[BatchDone]) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = {}
    for d in done:
        out |= d.records
    return out


@pytest.mark.parametrize("kind_name", sorted(KINDS))
async def test_every_kind_in_one_task_equals_the_endpoints_oracle(kind_name: str) -> None:
    hooks = RecordingHooks()
    async with sim_session(hooks, faults=VERDICTS, **NOW) as (sim, session):
        kind = KINDS[kind_name]
        targets = targets_of(sim, kind.target, 15)
        replies = kind_name == "comments"
        client = RqsEnrichClient(
            RqsClient(session, poll=POLL, limit=100_000), kind, replies=replies
        )
        done = await fetch(client, targets)
        want = oracle(sim, kind_name, targets, replies=replies)
        assert any(want.values())
        assert len(done) == 1 and merged(done) == want
        assert hooks.reserved.count(CREATE) == client.tasks == 1


async def test_a_saturated_batch_is_split_until_no_task_is_and_caps_hold() -> None:
    async with sim_session(**NOW) as (sim, session):
        kind = KINDS["comments"]
        videos = [v for v in targets_of(sim, "video_id", 60) if sim.corpus.get(v)["comment_count"]]  # type: ignore[index]
        want = oracle(sim, "comments", videos, max_per_target=3, replies=True)
        whole = sum(len(sim.enrich.expected("comments", v, replies=True)) for v in videos)
        limit = max(1, whole // 5)  # the whole batch is five times the limit
        created: list[tuple[tuple[Any, ...], int]] = []
        client = RqsEnrichClient(
            RqsClient(session, poll=POLL),
            kind,
            replies=True,
            max_per_target=3,
            limit=limit,
        )
        done = await fetch(client, videos, on_task=lambda t, i: created.append((t, i)))
        assert merged(done) == want
        assert not any(d.saturated for d in done)
        assert len(created) == client.tasks > len(done) > 1  # split ones were saturated
        assert sorted(t for d in done for t in d.targets) == sorted(videos)


async def test_a_task_created_before_a_restart_is_polled_not_created_again() -> None:
    hooks = RecordingHooks()
    async with sim_session(hooks, **NOW) as (sim, session):
        kind = KINDS["followers"]
        names = targets_of(sim, "username", 6)
        runner = RqsClient(session, poll=POLL, limit=100_000)
        task_id = await runner.create(
            kind.condition_groups(names), "follower_display_name,follower_username",
            category="followers_list",
        )  # fmt: skip
        client = RqsEnrichClient(runner, kind)
        done = await fetch(client, names, task_id=task_id)
        assert [d.task_id for d in done] == [task_id] and client.tasks == 0
        assert merged(done) == oracle(sim, "followers", names)
        assert hooks.reserved.count(CREATE) == 1


async def test_the_sdk_backend_serves_a_kind_alike() -> None:
    async with sim_session(faults=VERDICTS, **NOW) as (sim, _session):
        env = {
            "TIKTOK_API_BASE_URL": sim.base_url,
            "TIKTOK_CLIENT_KEY": "sim-client-key",
            "TIKTOK_CLIENT_SECRET": "sim-client-secret",
        }
        with rqs.RQSClient(environ=env, poll=POLL) as sdk:
            backend = PyrqsBackend(sdk, anyio.CapacityLimiter(2), poll=POLL, limit=100_000)
            kind = KINDS["liked_videos"]
            names = targets_of(sim, "username", 12)
            done = await fetch(RqsEnrichClient(backend, kind), names)
        want = oracle(sim, "liked_videos", names)
        assert sum(map(len, want.values())) and merged(done) == want
