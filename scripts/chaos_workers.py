"""Chaos for a lab's set-up: many workers on one study, state in PostgreSQL, SIGKILLs at random.

Part 1, workers: three `harvester run` processes harvest one study against `harvester simulate
--profile flaky`, the state in a fresh PostgreSQL database. Every so often (a random 0.3 to 1.5 s)
one live worker, picked at random, is SIGKILLed and a new one started in its place, until the
kills are spent; the survivors take the dead workers' leaves up once their leases run out. A
final run then finds the study complete. The dataset must equal the simulator's oracle, with no
id twice, no temporary file visible and nothing left in `_staging/`; `harvester verify` passes.
Requests wasted per kill: the requests the simulator counted, less those of the same study
harvested by three workers without a kill (same simulator seed), over the kills.

With `--s3` the dataset lives in a bucket of an S3-compatible server (moto's, started on
loopback): every worker stages its pages and uploads its files there. The bucket is then listed:
nothing but the files the state committed, `_harvest.json` and directory markers (zero-byte
`folder/` keys) may be there, nothing under `_staging/`; the objects are downloaded and read
with pyarrow and DuckDB.

Part 2, the pool: two studies in the same database name one pool with a small daily cap, each
needing more than the cap, two workers each, all at once; the simulator counts what they sent
together: never above the cap.

    python scripts/chaos_workers.py --kills 20 --seed 7 [--s3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos import (
    BIG,
    ENV,
    HARVESTER,
    REGIONS,
    Simulator,
    check_readable,
    dataset_ids,
    oracle,
)

from bench import Database

START = date(2023, 3, 6)
DAYS = 240
#: Seconds a request takes: long enough that workers die mid-leaf, not between studies.
LATENCY = 0.25
LEASE_S = 2.0

STUDY = """\
[study]
name = "{name}"
source = "research-api"
start_date = "{start}"
end_date = "{end}"
window = "1d"
condition_groups = [
  {{ operator = "and", conditions = [
    {{ field = "region_code", operator = "in", field_values = {regions} }},
  ] }},
]

[api]
base_url = "{base_url}"
max_concurrency = 2
requests_per_second = 500
timeout_s = 2
max_attempts = 8
retry_wait_s = 0.01
retry_wait_max_s = 0.2

[quota]
daily_requests = {daily_requests}
daily_records = {big}
on_exhausted = "exit"
{pool}
[output]
path = "{output}"

[state]
url = "{url}"
lease_s = {lease}
"""


def write_study(
    work: Path,
    name: str,
    url: str,
    base_url: str,
    *,
    daily: int = BIG,
    pool: str = "",
    days: int = DAYS,
    output: str | None = None,
) -> Path:
    text = STUDY.format(
        name=name,
        output=output or f"{name}.data",
        start=START.isoformat(),
        end=(START + timedelta(days=days - 1)).isoformat(),
        regions=json.dumps(REGIONS),
        base_url=base_url,
        daily_requests=daily,
        big=BIG,
        pool=f'pool = "{pool}"\n' if pool else "",
        url=url,
        lease=LEASE_S,
    )
    path = work / f"{name}.toml"
    path.write_text(text)
    return path


def spawn(
    config: Path, log: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [*HARVESTER, "run", str(config), "--no-progress", *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env or ENV,
        )


class Bucket:
    """A bucket on an S3-compatible server: moto's, started here on a free loopback port,
    unless `endpoint` names one already running."""

    def __init__(self, work: Path, endpoint: str | None = None, name: str = "chaos-lab") -> None:
        import boto3

        self.name = name
        self._proc: subprocess.Popen[bytes] | None = None
        if endpoint is None:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            self._log = (work / "moto.log").open("wb")
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
            endpoint = f"http://127.0.0.1:{port}"
        self.endpoint = endpoint
        self.env = {
            **ENV,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "chaos-key-id",
            "AWS_SECRET_ACCESS_KEY": "chaos-secret-key",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="chaos-key-id",
            aws_secret_access_key="chaos-secret-key",
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client.create_bucket(Bucket=self.name)
                break
            except self.client.exceptions.BucketAlreadyOwnedByYou:
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def url(self, prefix: str) -> str:
        return f"s3://{self.name}/{prefix}"

    def keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=prefix
        )
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def download(self, prefix: str, into: Path) -> Path:
        """The dataset's visible objects, as a local folder the readers take."""
        for key in self.keys(prefix + "/"):
            rel = key[len(prefix) + 1 :]
            if key.endswith("/") or rel.startswith("_"):
                continue
            target = into / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            self.client.download_file(self.name, key, str(target))
        return into

    def close(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._log.close()


def check_bucket(bucket: Bucket, prefix: str, committed: set[str]) -> None:
    """Nothing in the bucket but committed files, `_harvest.json` and directory markers; no
    staged page and no temporary name."""
    keys = bucket.keys(prefix + "/")
    objects = {k[len(prefix) + 1 :] for k in keys if not k.endswith("/")}
    extra = objects - committed - {"_harvest.json"}
    staged = [k for k in keys if "/_staging/" in k or k.endswith("/_staging/")]
    if extra or staged:
        raise AssertionError(f"left in the bucket: {sorted(extra)[:5]} {staged[:5]}")


def counted(sim: Simulator) -> int:
    days = sim.get("/_sim/stats")["quota"]["days"]
    return sum(int(d["requests"]) for d in days.values())


def events(folder: Path, name: str) -> list[dict[str, Any]]:
    out = []
    for path in folder.glob("*.jsonl"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                out.append(json.loads(line))
    return out


def workers_run(
    work: Path,
    seed: int,
    kills: int,
    say: Any,
    *,
    days: int = DAYS,
    bucket: Bucket | None = None,
) -> dict[str, Any]:
    """Three workers, `kills` SIGKILLs; returns the figures (raises on a broken guarantee).
    With `bucket`, the dataset is in it."""
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir()
    env = bucket.env if bucket is not None else ENV
    output = bucket.url("chaos") if bucket is not None else None
    sim = Simulator(work, "flaky", seed, latency=LATENCY)
    try:
        with Database("chaos") as db:
            config = write_study(work, "chaos", db.url, sim.url, days=days, output=output)
            started = 0

            def start() -> subprocess.Popen[bytes]:
                nonlocal started
                started += 1
                out, log = logs / f"w{started}.out", logs / f"w{started}.jsonl"
                return spawn(config, out, "--log-file", str(log), env=env)

            procs = [start() for _ in range(3)]
            done = 0
            t0 = time.monotonic()
            while done < kills:
                time.sleep(rng.uniform(0.3, 1.5))
                alive = [p for p in procs if p.poll() is None]
                if not alive:
                    break  # the study finished before the kills were spent
                victim = rng.choice(alive)
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait(10)
                done += 1
                procs.append(start())
            codes = [p.wait(timeout=600) for p in procs]
            wall = time.monotonic() - t0
            final = spawn(config, logs / "final.out", "--retry-failed", env=env)
            if final.wait(timeout=600) != 0:
                raise AssertionError(f"the final run failed: {(logs / 'final.out').read_text()}")
            if bucket is not None:
                committed = committed_files(db.url)
                check_bucket(bucket, "chaos", committed)
                root = bucket.download("chaos", work / "downloaded")
            else:
                root = work / "chaos.data"
            rows = check_readable(root)
            ids = dataset_ids(root)
            truth = oracle(sim, START, START + timedelta(days=days - 1))
            if len(ids) != len(set(ids)):
                raise AssertionError(f"{len(ids) - len(set(ids))} duplicate rows")
            lost, extra = truth - set(ids), set(ids) - truth
            if lost or extra:
                raise AssertionError(f"{len(lost)} records lost, {len(extra)} extra")
            staged = [p for p in (root / "_staging").rglob("*") if p.is_file()]
            temps = [p for p in root.rglob("*") if p.is_file() and p.name.endswith(".tmp")]
            if staged or temps:
                raise AssertionError(f"left behind: {staged[:3]} {temps[:3]}")
            verify = subprocess.run(
                [*HARVESTER, "verify", str(config)], capture_output=True, text=True, env=env
            )
            if verify.returncode != 0:
                raise AssertionError(f"verify failed: {verify.stdout}{verify.stderr}")
            requests = counted(sim)
    finally:
        sim.close()
    takeovers = len(events(logs, "leaf_taken_over"))
    where = "S3" if bucket is not None else "a folder"
    say(
        f"workers ({where}): {done} kills, {takeovers} take-overs, {rows:,} rows, 0 lost, "
        "0 duplicated"
    )
    return {
        "dataset": where,
        "kills": done,
        "workers_started": started,
        "exit_codes": sorted(set(codes)),
        "takeovers": takeovers,
        "records": rows,
        "records_lost": 0,
        "duplicates": 0,
        "requests": requests,
        "seconds": round(wall, 1),
    }


def committed_files(url: str) -> set[str]:
    """The dataset files the study's state records (relative paths)."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT path FROM harvester.files WHERE study = 'chaos'").fetchall()
    return {r[0] for r in rows}


def baseline(work: Path, seed: int, *, days: int = DAYS, bucket: Bucket | None = None) -> int:
    """Requests the same study costs three workers that are never killed."""
    work.mkdir(parents=True, exist_ok=True)
    sim = Simulator(work, "flaky", seed, latency=LATENCY)
    output = bucket.url("baseline") if bucket is not None else None
    env = bucket.env if bucket is not None else ENV
    try:
        with Database("chaos_base") as db:
            config = write_study(work, "chaos", db.url, sim.url, days=days, output=output)
            procs = [spawn(config, work / f"b{i}.out", env=env) for i in range(3)]
            if any(p.wait(timeout=600) for p in procs):
                raise AssertionError("a crash-free worker failed")
            return counted(sim)
    finally:
        sim.close()


def pool_run(work: Path, seed: int, cap: int, say: Any) -> dict[str, Any]:
    """Two studies, one pool of `cap` requests a day, two workers each, all at once."""
    work.mkdir(parents=True, exist_ok=True)
    sim = Simulator(work, "flaky", seed, latency=0.02)
    try:
        with Database("chaos_pool") as db:
            configs = [
                write_study(work, name, db.url, sim.url, daily=cap, pool="lab")
                for name in ("alpha", "beta")
            ]
            procs = [spawn(c, work / f"{c.stem}-{i}.out") for c in configs for i in range(2)]
            codes = [p.wait(timeout=600) for p in procs]
            sent = counted(sim)
            quota = subprocess.run(
                [*HARVESTER, "quota", "--json", str(configs[0])],
                capture_output=True,
                text=True,
                env=ENV,
            )
            by_study: dict[str, int] = {}
            for row in json.loads(quota.stdout)["by_worker"]:
                by_study[row["study"]] = by_study.get(row["study"], 0) + row["requests"]
    finally:
        sim.close()
    if sent > cap:
        raise AssertionError(f"the studies sent {sent} counted requests together, cap {cap}")
    say(f"pool: {sent} of {cap} requests sent together; by study {by_study}; exits {codes}")
    return {"cap": cap, "counted_at_simulator": sent, "by_study": by_study, "exit_codes": codes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs (default 20)")
    parser.add_argument("--seed", type=int, default=None, help="default: random, printed")
    parser.add_argument("--cap", type=int, default=60, help="the pool's daily requests")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--s3", action="store_true", help="the dataset in an S3 bucket (moto)")
    parser.add_argument("--days", type=int, default=DAYS, help=f"the study's days ({DAYS})")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    print(f"chaos seed: {seed} (rerun with --seed {seed})")
    work = Path(tempfile.mkdtemp(prefix="harvester-chaos-workers-"))
    bucket = Bucket(work) if args.s3 else None
    try:
        figures = workers_run(
            work / "workers", seed, args.kills, print, days=args.days, bucket=bucket
        )
        clean = baseline(work / "baseline", seed, days=args.days, bucket=bucket)
        figures["requests_without_kills"] = clean
        wasted = (figures["requests"] - clean) / max(1, figures["kills"])
        figures["requests_wasted_per_kill"] = round(wasted, 2)
        figures["pool"] = pool_run(work / "pool", seed, args.cap, print)
    except BaseException:
        print(f"chaos: work kept in {work}")
        raise
    finally:
        if bucket is not None:
            bucket.close()
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
