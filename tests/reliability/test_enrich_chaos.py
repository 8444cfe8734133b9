"""SIGKILL chaos over an enrichment: the real CLI killed at random moments of a study with
comments (and their replies), users and followers against the flaky simulator in its own
process; after the kills, one more run completes, and every kind equals the oracle exactly."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from tests.reliability._study import study_text, write_study

KILLS = 10
#: (event, whether it carries `kind`): an enrichment's events, not the videos' (scripts/chaos.py
#: kills those).
MOMENTS = (
    ("page_fetched", True),
    ("page_fetched", True),
    ("file_committed", True),
    ("enrich_targets", True),
)
BLOCKS = """
[[enrich]]
kind = "comments"
where = "comment_count >= 3"
replies = true

[[enrich]]
kind = "users"

[[enrich]]
kind = "followers"
where = "region_code = 'NL'"
"""


def _rows(root: Path, key: str) -> list[tuple[Any, ...]]:
    """The dataset as a reader sees it, every visible file whole; (target, record key) rows."""
    files = [
        p
        for p in root.rglob("*.parquet")
        if not any(part.startswith((".", "_")) for part in p.relative_to(root).parts)
    ]
    for f in files:
        pq.ParquetFile(f).metadata  # noqa: B018 - a partial file has no footer: this raises
    if not files:
        return []
    con = duckdb.connect()
    try:
        return con.execute(
            f"SELECT {key} FROM read_parquet(?, hive_partitioning = true, "
            "hive_types = {'retrieved_date': VARCHAR})",
            [str(root / "**" / "*.parquet")],
        ).fetchall()
    finally:
        con.close()


KEYS = {
    "comments": "video_id, CAST(id AS VARCHAR)",
    "users": "username, username",
    "followers": "username, follower_username",
}


def _run(chaos: ModuleType, config: Path, log: Path, rng: random.Random, moment: Any) -> bool:
    """One `harvester run`, killed at `moment` if it comes; True if it was killed."""
    proc = subprocess.Popen(
        [*chaos.HARVESTER, "run", str(config), "--no-progress", "--log-file", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=chaos.ENV,
    )
    tail = chaos.LogTail(log)
    event, enrich = moment
    nth = rng.randint(1, 12 if event == "page_fetched" else 2)
    seen = 0
    started = time.monotonic()
    try:
        while proc.poll() is None:
            assert time.monotonic() - started < 180, f"run took too long ({log})"
            for e in tail.poll():
                if e.get("event") == event and (("kind" in e) == enrich):
                    seen += 1
                    if seen >= nth:
                        time.sleep(rng.uniform(0.0, 0.01))
                        os.kill(proc.pid, signal.SIGKILL)
                        proc.wait()
                        return proc.returncode == -signal.SIGKILL
            time.sleep(0.002)
        assert proc.returncode == 0, log.read_text()[-2000:]
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_sigkills_during_an_enrichment_lose_nothing(tmp_path: Path, chaos: ModuleType) -> None:
    seed = int(os.environ.get("HARVESTER_CHAOS_SEED", "7"))
    rng = random.Random(seed)
    sim = chaos.Simulator(tmp_path / "sim", "flaky", 11, latency=0.005)
    try:
        text = study_text(
            sim.url,
            days=2,
            window=1,
            fields=("id", "create_time", "username", "region_code", "comment_count"),
        )
        config, study = write_study(tmp_path / "study", text + BLOCKS)
        kills = 0
        runs = 0
        while kills < KILLS and runs < KILLS * 3:
            runs += 1
            moment = MOMENTS[runs % len(MOMENTS)]
            killed = _run(chaos, config, tmp_path / f"run-{runs}.jsonl", rng, moment)
            kills += killed
            # After every kill, each dataset is whole: no partial file, no row twice.
            for e in study.enrichments:
                rows = _rows(e.output_path, KEYS[e.kind])
                assert len(rows) == len(set(rows)), f"duplicate rows in {e.kind} after a kill"
            if not killed:
                break
        assert kills >= KILLS, f"the study finished after {kills} kills"
        final = chaos.Chaos(tmp_path, seed, 0).harvester(
            "run", str(config), "--no-progress", "--log-file", str(tmp_path / "final.jsonl")
        )
        assert final.returncode == 0, final.stderr
        con = duckdb.connect()
        videos = con.execute(
            "SELECT DISTINCT id, username, region_code, comment_count FROM read_parquet(?, "
            "hive_partitioning = true)",
            [str(study.output_path / "**" / "*.parquet")],
        ).fetchall()
        targets = {
            "comments": sorted({v[0] for v in videos if v[3] >= 3}),
            "users": sorted({v[1] for v in videos}),
            "followers": sorted({v[1] for v in videos if v[2] == "NL"}),
        }
        for e in study.enrichments:
            want = sim.post(
                "/_sim/enrich/expected",
                {"kind": e.kind, "targets": targets[e.kind], "replies": e.replies},
            )
            got = _rows(e.output_path, KEYS[e.kind])
            expected = set()
            for target, rows in want["rows"].items():
                for r in rows:
                    if e.kind == "comments":
                        expected.add((int(target), str(r["id"])))
                    elif e.kind == "users":
                        expected.add((target, target))
                    else:
                        expected.add((target, r["username"]))
            assert len(got) == len(set(got)), e.kind
            assert set(got) == expected, (e.kind, len(got), len(expected))
    finally:
        sim.close()
