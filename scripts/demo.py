"""`make demo`: start the built-in simulator, harvest the two demo studies, show what landed;
then the VCE's two stages: a test-stage sample of every window, and an aggregate for release;
and end by writing each study's HTML report (`harvester report`) and printing where it is.

Everything runs offline on this machine: the simulator serves both TikTok APIs on loopback,
the harvester runs exactly as it would against the real API (`harvester run configs/...`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
PORT = 8765  # the demo configs point at it
VCE_PORT = 8766  # configs/demo-vce.toml: a simulator in the VCE's test stage
STUDIES = ("configs/demo.toml", "configs/demo-rqs.toml")
HARVESTER = str(Path(sys.executable).with_name("harvester"))


def say(text: str) -> None:
    print(f"\n\033[1m{text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def sh(*args: str, env: dict[str, str]) -> int:
    print(f"$ harvester {' '.join(args)}", flush=True)
    return subprocess.run([HARVESTER, *args], cwd=ROOT, env=env, check=False).returncode


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def start_simulator(log: Path, port: int = PORT, *extra: str) -> subprocess.Popen[bytes]:
    if not port_free(port):
        sys.exit(f"demo: port {port} is in use; stop what listens there and run make demo again")
    sim = subprocess.Popen(
        [HARVESTER, "simulate", "--port", str(port), "--seed", "7", "--latency", "0.005", *extra],
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while port_free(port):
        if sim.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"demo: the simulator did not start; see {log.relative_to(ROOT)}")
        time.sleep(0.1)
    return sim


def sim_stats() -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/_sim/stats", timeout=10) as r:
        stats: dict[str, object] = json.load(r)
    return stats


def show_dataset(path: Path) -> None:
    glob = str(path / "**" / "*.parquet")
    con = duckdb.connect()
    say(f"DuckDB over {path}")
    query = f"""
        SELECT region_code, strftime(to_timestamp(create_time), '%Y-%m') AS month,
               count(*) AS videos, count(DISTINCT id) AS distinct_ids,
               sum(view_count) AS views
        FROM read_parquet('{glob}', hive_partitioning = true)
        GROUP BY ALL ORDER BY month, region_code
    """
    print(query.strip())
    print(con.sql(query))
    top = f"""
        SELECT tag, count(*) AS videos
        FROM (SELECT unnest(hashtag_names) AS tag
              FROM read_parquet('{glob}', hive_partitioning = true))
        GROUP BY tag ORDER BY videos DESC LIMIT 5
    """
    print(con.sql(top))


def show_comments(videos: Path) -> None:
    """The demo's enrichment: comments beside the videos, joined to them by video_id."""
    comments = videos.with_name(videos.name + ".comments")
    if not any(comments.rglob("*.parquet")):
        return
    con = duckdb.connect()
    say(f"DuckDB: {comments} joined to {videos}")
    query = f"""
        SELECT v.id AS video_id, v.username, v.comment_count,
               count(c.id) AS fetched, max(c.like_count) AS top_likes,
               arg_max(c.text, c.like_count) AS top_comment
        FROM read_parquet('{videos}/**/*.parquet', hive_partitioning = true) v
        JOIN read_parquet('{comments}/**/*.parquet', hive_partitioning = true) c
          ON c.video_id = v.id
        GROUP BY ALL ORDER BY v.comment_count DESC LIMIT 8
    """
    print(query.strip())
    print(con.sql(query))


def main() -> None:
    os.chdir(ROOT)  # relative paths in what the demo prints
    demo = ROOT / ".demo"
    shutil.rmtree(demo, ignore_errors=True)  # the demo's own folder: start afresh each time
    demo.mkdir()
    env = {
        **os.environ,
        "TIKTOK_CLIENT_KEY": "sim-client-key",
        "TIKTOK_CLIENT_SECRET": "sim-client-secret",
    }
    say(f"Starting the simulator on 127.0.0.1:{PORT} (log: .demo/simulator.log)")
    sim = start_simulator(demo / "simulator.log")
    summary = []
    try:
        for config in STUDIES:
            name = Path(config).stem
            say(f"Study {config}")
            sh("plan", config, env=env)
            before = sim_stats()
            started = time.monotonic()
            code = sh("run", config, env=env)
            wall = time.monotonic() - started
            if code != 0:
                sys.exit(f"demo: harvester run {config} exited {code}")
            after = sim_stats()
            sh("status", config, env=env)
            if sh("verify", config, env=env) != 0:
                sys.exit(f"demo: harvester verify {config} failed")
            requests = _counted(after) - _counted(before)
            rows = _count_rows(Path(".demo") / name)
            summary.append((config, rows, requests, wall))
            show_dataset(Path(".demo") / name)
            show_comments(Path(".demo") / name)
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    vce_stages(demo, env)
    say("Summary")
    for config, rows, requests, wall in summary:
        print(f"{config:24} {rows:>8,} videos  {requests:>5} counted requests  {wall:5.1f} s")
    print("\nThe datasets are in .demo/; run `make demo` again to start over.")
    # Last, the pages a researcher opens: one self-contained HTML file per study.
    say("Reports (open them in a browser; no network needed)")
    for config in (*STUDIES, "configs/demo-vce.toml"):
        if sh("report", config, env=env) != 0:
            sys.exit(f"demo: harvester report {config} failed")


def vce_stages(demo: Path, env: dict[str, str]) -> None:
    """The test stage samples every window; the execution stage releases only aggregates."""
    config = "configs/demo-vce.toml"
    say(f"The VCE's test stage: {config} (simulator on 127.0.0.1:{VCE_PORT}, --stage test)")
    sim = start_simulator(demo / "simulator-test-stage.log", VCE_PORT, "--stage", "test")
    try:
        sh("plan", config, env=env)
        code = sh("run", config, env=env)
        if code != 0:
            sys.exit(f"demo: harvester run {config} exited {code}")
        sh("verify", config, env=env)
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    per_window = duckdb.connect().sql(
        "SELECT _shard AS window, count(*) AS videos FROM "
        "read_parquet('.demo/demo-vce/**/*.parquet') GROUP BY 1 ORDER BY 1 LIMIT 4"
    )
    print(per_window)
    say("The execution stage releases only aggregates: harvester aggregate")
    out = ".demo/demo-rqs-by-region.csv"
    sh("aggregate", "configs/demo-rqs.toml", "configs/demo-aggregate.sql", "--out", out, env=env)
    print(Path(out).read_text(), end="")


def _count_rows(path: Path) -> int:
    result = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{path}/**/*.parquet')")
    return int(result.fetchall()[0][0])


def _counted(stats: dict[str, object]) -> int:
    """Requests the simulator counted against quota, over every UTC day it saw."""
    days = stats.get("quota", {})
    assert isinstance(days, dict)
    return sum(int(d.get("requests", 0)) for d in days.get("days", {}).values())


if __name__ == "__main__":
    main()
