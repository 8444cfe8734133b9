"""Enrichments end to end: videos harvested, then comments, users, followers, ... about them,
each dataset beside the videos and equal to the simulator's oracle, read back with DuckDB."""

from __future__ import annotations

import json
import ssl
import tomllib
from pathlib import Path
from typing import Any

import anyio
import duckdb
import pyarrow.dataset as ds
import pytest
import tomli_w

from harvester.config import Study, loads_study
from harvester.kinds import KINDS
from harvester.orchestrator import EXIT_OK, plan_report, status_report, verify_study
from harvester.orchestrator._enrich import enrich_staging, open_enrich_state
from harvester.simulator.app import Simulator
from harvester.simulator.testing import running_simulator
from harvester.state import utc_day
from harvester.state.enrich import EnrichState
from tests.orchestrator.conftest import FIELDS, SIM, cli, run, study_text

pytestmark = pytest.mark.anyio

VIDEO_FIELDS = (*FIELDS, "comment_count", "playlist_id")
#: Per-target verdicts switched on: every user kind meets private, deleted and under-18 accounts.
VERDICTS = {"account_private": 0.08, "account_deleted": 0.05, "account_under_18": 0.04}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest) -> str | None:
    """The enrichments' state beside the study's: in its SQLite file, or in PostgreSQL."""
    return None if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


def enrich_study(
    tmp_path: Path,
    base_url: str,
    blocks: list[dict[str, Any]],
    *,
    api: dict[str, Any] | None = None,
    **kw: Any,
) -> Study:
    """A public-API study with these `[[enrich]]` blocks; `api` adds to its `[api]` table."""
    kw.setdefault("source", "research-api")
    kw.setdefault("fields", VIDEO_FIELDS)
    lease_s = kw.pop("lease_s", None)
    doc = tomllib.loads(study_text(base_url, **kw))
    doc["api"].update(api or {})
    if lease_s is not None:
        doc["state"]["lease_s"] = lease_s
    text = tomli_w.dumps({**doc, "enrich": blocks})
    path = tmp_path / "study.toml"
    path.write_text(text)
    return loads_study(text, path)


def read(root: Path) -> list[dict[str, Any]]:
    con = duckdb.connect()
    rel = con.sql(
        f"SELECT * FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true, "
        "hive_types = {'retrieved_date': VARCHAR})"
    )
    cols = rel.columns
    return [dict(zip(cols, r, strict=True)) for r in rel.fetchall()]


def video_targets(study: Study, column: str, where: str = "true") -> list[Any]:
    con = duckdb.connect()
    rows = con.sql(
        f"SELECT DISTINCT {column} FROM read_parquet('{study.output_path}/**/*.parquet', "
        f"hive_partitioning = true) WHERE {column} IS NOT NULL AND ({where})"
    ).fetchall()
    return sorted(r[0] for r in rows)


def expected_rows(
    sim: Simulator, kind: str, targets: list[Any], **kw: Any
) -> tuple[dict[Any, list[dict[str, Any]]], dict[Any, str]]:
    rows: dict[Any, list[dict[str, Any]]] = {}
    verdicts: dict[Any, str] = {}
    for t in targets:
        got = sim.enrich.expected(kind, t, **kw)
        if isinstance(got, str):
            verdicts[t] = got
        else:
            rows[t] = got
    return rows, verdicts


def assert_kind_equals_oracle(
    sim: Simulator,
    study: Study,
    kind_name: str,
    targets: list[Any],
    got: list[dict[str, Any]] | None = None,
    **kw: Any,
) -> tuple[int, dict[str, int]]:
    """The kind's dataset (its folder, or the rows `got` from elsewhere) holds exactly the
    oracle's rows per target, each once, and the state records every refused target's verdict.
    Returns (rows, verdict counts)."""
    kind = KINDS[kind_name]
    e = next(x for x in study.enrichments if x.kind == kind_name)
    if got is None:
        got = read(e.output_path)
    expected, verdicts = expected_rows(sim, kind_name, targets, **kw)
    renames = dict(kind.renames)
    by_target: dict[Any, list[dict[str, Any]]] = {}
    for r in got:
        by_target.setdefault(r[kind.target], []).append(r)
    assert set(by_target) <= set(expected), "rows for a refused or unknown target"
    total = 0
    for t, rows in expected.items():
        have = by_target.get(t, [])
        want = [{kind.target: t} | {renames.get(k, k): v for k, v in r.items()} for r in rows]
        key = renames.get(kind.record_key, kind.record_key) if kind.record_key else kind.target
        assert sorted(str(h[key]) for h in have) == sorted(str(w[key]) for w in want), t
        index = {str(h[key]): h for h in have}
        for w in want:
            h = index[str(w[key])]
            for col, value in w.items():
                assert h[col] == value, (kind_name, t, col, h[col], value)
            assert h["_shard"].startswith(f"{kind_name}:")
            assert h["_source"] == "research-api"
        total += len(want)
    assert len(got) == total
    es = open_enrich_state(study)
    try:
        for t, verdict in verdicts.items():
            row = es.target(kind_name, str(t))
            assert (row.status, row.outcome) == ("unavailable", verdict)
    finally:
        es.close()
    counts: dict[str, int] = {}
    for v in verdicts.values():
        counts[v] = counts.get(v, 0) + 1
    return total, counts


async def test_comments_with_replies_and_users_equal_the_oracle(
    tmp_path: Path, state_url: str | None
) -> None:
    async with running_simulator("clean", **SIM, faults=VERDICTS) as sim:
        study = enrich_study(
            tmp_path,
            sim.base_url,
            [
                {"kind": "comments", "where": "comment_count >= 3", "replies": True},
                {"kind": "users", "where": "region_code = 'NL'"},
                {"kind": "followers", "where": "region_code = 'NL'"},
            ],
            days=2,
            state_url=state_url,
        )
        # Before anything is spent: the prior's videos stand in for the planned ones, said so;
        # a `where` over a column the prior lacks counts every planned video.
        before = plan_report(study)
        assert [p["kind"] for p in before["enrichments"]] == ["comments", "users", "followers"]
        assert all(p["assumed"] for p in before["enrichments"])
        assert "prior videos" in before["enrichments"][0]["basis"]
        assert "every planned video" in before["enrichments"][1]["basis"]
        assert before["enrichments"][2]["pool"] == "followers"
        assert "enrich comments" in before["text"]
        assert await run(sim, study) == EXIT_OK
        videos = study.output_path
        comments = videos.with_name("e2e.comments")
        users = videos.with_name("e2e.users")
        assert [e.output_path for e in study.enrichments][:2] == [comments, users]
        # Beside the videos, never inside: a reader of the videos sees no comment.
        video_files = list(videos.rglob("*.parquet"))
        assert video_files
        assert not any(p.is_relative_to(comments) or p.is_relative_to(users) for p in video_files)
        vids = video_targets(study, "id", "comment_count >= 3")
        assert vids
        rows, _ = assert_kind_equals_oracle(sim, study, "comments", vids, replies=True)
        assert rows > len(vids)
        got = read(comments)
        replies = [r for r in got if r["parent_comment_id"] != r["video_id"]]
        top = {r["id"] for r in got if r["parent_comment_id"] == r["video_id"]}
        assert replies and all(r["parent_comment_id"] in top for r in replies)
        names = video_targets(study, "username", "region_code = 'NL'")
        n_users, verdicts = assert_kind_equals_oracle(sim, study, "users", names)
        assert n_users and verdicts, "the seed should meet refused accounts"
        # DuckDB joins the comments to their videos directly.
        con = duckdb.connect()
        joined = con.execute(
            f"SELECT count(*) FROM read_parquet('{videos}/**/*.parquet', hive_partitioning=true)"
            f" v JOIN read_parquet('{comments}/**/*.parquet', hive_partitioning=true) c "
            "ON c.video_id = v.id"
        ).fetchone()
        assert joined is not None and joined[0] == len(got)
        manifest = json.loads((comments / "_harvest.json").read_text())
        assert manifest["kind"] == "comments" and manifest["key"] == "video_id"
        assert manifest["rows"] == len(got)
        # A mixed study's quota, per pool at the simulator: the followers lists drew on their
        # own (20,000 calls a day), the videos, comments and users on the shared one.
        assert_kind_equals_oracle(sim, study, "followers", names)
        pools = {
            "research": ("rest.video_query", "rest.comments", "rest.users"),
            "followers": ("rest.followers",),
        }
        for pool, ledger in (("research", sim.ledger), ("followers", sim.follow_ledger)):
            counted = sum(d["requests"] for d in ledger.snapshot()["days"].values())
            assert counted == sum(sim.stats.requests_to(ep) for ep in pools[pool]), pool
        # status shows each enrichment's progress and outcomes by kind.
        status = status_report(study)
        by_kind = {x["kind"]: x for x in status["enrichments"]}
        assert by_kind["users"]["outcomes"] == {"ok": n_users, **verdicts}
        assert by_kind["comments"]["dataset_rows"] == len(got)
        assert by_kind["followers pool"]["requests_today"] > 0
        assert "enrich users" in status["text"] and "under_18" in status["text"]
        users_line = next(x for x in status["text"].splitlines() if x.startswith("enrich users"))
        refused = sum(verdicts.values())
        assert f"{n_users + refused:,} targets: {n_users:,} done, {refused:,} unavailable" in (
            users_line
        )
        assert users_line.split("outcomes ")[1].startswith(f"ok {n_users:,}, ")
        # One request answered per user: its profile, or its verdict.
        answered = f"{sim.stats.requests_to('rest.users'):,} requests answered"
        assert answered in users_line, users_line
        assert by_kind["users"]["unsettled"] == 0  # the videos are years old: settled
        after = plan_report(study)
        assert [p["targets_left"] for p in after["enrichments"]] == [0, 0, 0]
        # A second run fetches nothing new: every target is done.
        asked = sim.stats.requests_to("rest.comments")
        assert await run(sim, study) == EXIT_OK
        assert sim.stats.requests_to("rest.comments") == asked
        assert len(read(comments)) == len(got)
        # verify checks each kind's dataset against the enrichment state too.
        checked = verify_study(study)
        assert checked["ok"], checked["text"]
        assert [i["kind"] for i in checked["enrichments"]] == ["comments", "users", "followers"]
        assert checked["enrichments"][0]["rows"] == len(got)
        lost = next(comments.rglob("*.parquet"))
        lost.rename(lost.with_name("moved.parquet"))
        broken = verify_study(study)
        assert not broken["ok"]
        assert broken["enrichments"][0]["missing"] and broken["enrichments"][0]["strays"]


async def test_every_kind_equals_the_oracle_under_faults(
    tmp_path: Path, state_url: str | None
) -> None:
    blocks: list[dict[str, Any]] = [
        {"kind": k, "where": "region_code = 'DE'"}
        for k in ("followers", "following", "liked_videos", "pinned_videos", "reposted_videos")
    ]
    blocks.append({"kind": "playlists"})
    blocks.append({"kind": "comments", "where": "comment_count >= 50", "max_per_target": 30})
    async with running_simulator("flaky", **SIM, faults={"window_failure": 0}) as sim:
        study = enrich_study(tmp_path, sim.base_url, blocks, days=2, state_url=state_url)
        assert await run(sim, study) == EXIT_OK
        names = video_targets(study, "username", "region_code = 'DE'")
        for kind in ("followers", "following", "liked_videos", "pinned_videos", "reposted_videos"):
            rows, _ = assert_kind_equals_oracle(sim, study, kind, names)
            assert rows, kind
        playlists = video_targets(study, "playlist_id", "playlist_id <> 0")
        assert assert_kind_equals_oracle(sim, study, "playlists", playlists)[0]
        vids = video_targets(study, "id", "comment_count >= 50")
        rows, _ = assert_kind_equals_oracle(
            sim, study, "comments", vids, max_per_target=30, replies=False
        )
        assert rows <= 30 * len(vids)
        # Faults answered before the quota check are not counted: at most every call.
        follow = sum(d["requests"] for d in sim.follow_ledger.snapshot()["days"].values())
        calls = sim.stats.requests_to("rest.followers") + sim.stats.requests_to("rest.following")
        assert 0 < follow <= calls
        table = ds.dataset(
            study.enrichments[0].output_path, format="parquet", partitioning="hive"
        ).to_table()
        assert "username" in table.column_names and "follower_username" in table.column_names


async def test_sql_duckdb_cannot_run_is_one_line_and_exit_2(tmp_path: Path) -> None:
    async with running_simulator("clean", **SIM) as sim:
        study = enrich_study(
            tmp_path, sim.base_url, [{"kind": "users", "where": "no_such_column > 1"}], days=1
        )
        done = await anyio.to_thread.run_sync(
            lambda: cli("run", str(study.config_path), "--no-progress")
        )
        assert done.returncode == 2, done.stderr
        lines = [x for x in done.stderr.splitlines() if not x.startswith("harvester: warning:")]
        assert len(lines) == 1 and "enrich[0].where: DuckDB cannot run it" in lines[0]
        assert lines[0].startswith("harvester: error: study.toml: enrich[0].where:"), lines
        assert "Traceback" not in done.stderr
        # The videos harvested before are kept, whole.
        assert video_targets(study, "id")


class _Killed(Exception):
    """Stands in for a SIGKILL at one exact instant (chaos tests reach it only by chance)."""


def _holds(exc: BaseException, kind: type[BaseException]) -> bool:
    if isinstance(exc, kind):
        return True
    return isinstance(exc, BaseExceptionGroup) and any(_holds(e, kind) for e in exc.exceptions)


async def test_a_user_killed_after_its_page_before_done_is_neither_duplicated_nor_refetched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state_url: str | None
) -> None:
    async with running_simulator("clean", **SIM) as sim:
        study = enrich_study(
            tmp_path, sim.base_url, [{"kind": "users"}], days=1, state_url=state_url
        )
        real_finish = EnrichState.finish
        killed: list[str] = []

        def dies_once(self: EnrichState, kind: str, target: str, *a: Any, **kw: Any) -> None:
            if not killed:
                killed.append(target)  # the page is staged and checkpointed; done is not
                raise _Killed(target)
            real_finish(self, kind, target, *a, **kw)

        monkeypatch.setattr(EnrichState, "finish", dies_once)
        try:
            await run(sim, study)
        except BaseException as exc:
            assert _holds(exc, _Killed), exc
        assert killed, "the run never reached a user's checkpoint"
        monkeypatch.setattr(EnrichState, "finish", real_finish)
        assert await run(sim, study) == EXIT_OK
        names = video_targets(study, "username")
        # Each user once, and the killed user's page was not paid for twice.
        assert_kind_equals_oracle(sim, study, "users", names)
        assert sim.stats.requests_to("rest.users") == len(names)


async def test_enrichments_trust_the_studys_ca_bundle(
    tmp_path: Path, tls_server: ssl.SSLContext, ca_file: Path
) -> None:
    # The CA is the test's own: only `[api] ca_bundle` makes the simulator's certificate
    # trusted, for the enrichment requests as for the videos'.
    async with running_simulator("clean", **SIM, tls=tls_server) as sim:
        study = enrich_study(
            tmp_path,
            sim.base_url,
            [{"kind": "comments", "where": "comment_count >= 3"}],
            api={"ca_bundle": str(ca_file)},
            days=1,
        )
        assert await run(sim, study) == EXIT_OK
        vids = video_targets(study, "id", "comment_count >= 3")
        rows, _ = assert_kind_equals_oracle(sim, study, "comments", vids, replies=False)
        assert vids and rows


@pytest.mark.postgres
async def test_two_workers_share_a_study_and_its_enrichments_without_a_duplicate(
    tmp_path: Path, pg_url: str
) -> None:
    """Two workers on one study in PostgreSQL: they share the videos, then the targets
    (leased, one worker each), and every kind's dataset still equals the oracle, each target
    fetched once."""
    blocks: list[dict[str, Any]] = [
        {"kind": "followers"},
        {"kind": "users"},
        {"kind": "comments", "where": "comment_count >= 3", "replies": True},
    ]
    async with running_simulator("clean", **SIM, faults=VERDICTS) as sim:
        # Short leases: a worker waiting for the other's last video leaf looks again soon, so
        # both are at the enrichments together.
        study = enrich_study(tmp_path, sim.base_url, blocks, days=3, state_url=pg_url, lease_s=1.0)
        codes: list[int] = []

        async def worker() -> None:
            codes.append(await run(sim, study))

        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(worker)
        assert codes == [EXIT_OK, EXIT_OK]
        names = video_targets(study, "username")
        for kind in ("users", "followers"):
            assert_kind_equals_oracle(sim, study, kind, names)
        vids = video_targets(study, "id", "comment_count >= 3")
        assert_kind_equals_oracle(sim, study, "comments", vids, replies=True)
        # A user's info is one request: any target fetched by both workers would show here.
        assert sim.stats.requests_to("rest.users") == len(names)
        es = open_enrich_state(study)
        try:
            followers = es.quota.usage_by_worker(utc_day(sim.clock.now()))
        finally:
            es.close()
    assert len({u.worker for u in followers if u.requests}) == 2, followers
    assert verify_study(study)["ok"]
    for e in study.enrichments:
        assert not enrich_staging(study, e).files(), e.kind
