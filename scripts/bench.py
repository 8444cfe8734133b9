"""`make bench`: quota, makespan, CPU, memory and plan-scale figures in one run.

Every harvest runs `harvester run` in its own process against `harvester simulate` in another,
as a user would; CPU and peak RSS are the harvester child's own (`os.wait4`). Speed figures are
ratios against a reference measured in the same run, so a noisy machine moves both sides.

    python scripts/bench.py            # the full run: writes bench/results.json, docs/benchmarks.md
    python scripts/bench.py --quick    # smaller studies, prints only (for development)
    python scripts/bench.py --only cpu,memory --profile
    python scripts/bench.py --only scale   # workers, leases, the pool's ledger (PostgreSQL)
    python scripts/bench.py --only s3      # a dataset in S3 (moto) against a local folder
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
HARVESTER = [PY, "-m", "harvester.cli"]
RESULTS = ROOT / "bench" / "results.json"
DOC = ROOT / "docs" / "benchmarks.md"
MARK_START, MARK_END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"
ENV = {
    **os.environ,
    "TIKTOK_CLIENT_KEY": "sim-client-key",
    "TIKTOK_CLIENT_SECRET": "sim-client-secret",
    "PYTHONHASHSEED": "0",
}
#: A query every simulated video matches (all regions): CPU and memory runs take everything.
ALL_REGIONS = [
    "US", "NL", "DE", "GB", "FR", "ES", "IT", "BE", "PL", "SE",
    "IE", "BR", "MX", "JP", "IN", "TR", "ID", "AU", "NG", "EG",
]  # fmt: skip
NL_BE = ["NL", "BE"]
BIG = 10**12  # quotas that never bind: what is measured is what the API counts
QUOTA_FREE: Mapping[str, float] = {"daily_requests": BIG, "daily_records": BIG}


@dataclass(slots=True)
class Figure:
    figure: str
    target: str
    measured: float
    unit: str
    met: bool | None  # None: reported, no target
    note: str = field(default="", repr=False)


# --------------------------------------------------------------------------- processes


class Simulator:
    """`harvester simulate` in its own process, on a free port."""

    def __init__(
        self, work: Path, settings: Mapping[str, float], *, profile: str = "clean"
    ) -> None:
        self.cmd = [*HARVESTER, "simulate", "--port", "0", "--profile", profile]
        for name, value in settings.items():
            if name == "latency":
                self.cmd += ["--latency", str(value)]
            elif name == "videos_per_day":
                self.cmd += ["--videos-per-day", str(int(value))]
            else:
                self.cmd += ["--set", f"{name}={value}"]
        self.log = work / f"simulator-{profile}-{time.monotonic_ns()}.log"
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Simulator:
        with self.log.open("w") as err:
            self._proc = subprocess.Popen(
                self.cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=ENV, cwd=ROOT
            )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        found = re.search(r"(http://\S+)", line)
        if not found:
            self._proc.kill()
            raise RuntimeError(f"simulator did not start: {line!r} (see {self.log})")
        self.url = found.group(1)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def _call(self, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=600) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("/_sim/stats")
        return result

    def count(self, condition_groups: list[Any], start: int, end: int) -> int:
        body = {"condition_groups": condition_groups, "start": start, "end": end}
        return int(self._call("/_sim/oracle", body)["count"])

    def quota_requests(self) -> int:
        """Requests the API charged to the daily quota (every day of the run)."""
        days = self.stats()["quota"]["days"]
        return sum(int(d["requests"]) for d in days.values())


@dataclass(slots=True)
class Run:
    rc: int
    wall: float
    cpu: float
    maxrss_mb: float


def run_child(cmd: Sequence[str], log: Path, *, env: dict[str, str] | None = None) -> Run:
    """Run `cmd` to the end; its wall time, CPU seconds and peak RSS (its own, via wait4)."""
    with log.open("w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env or ENV, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(proc.returncode, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0)


def harvest(
    config: Path, work: Path, *, profile_to: Path | None = None, fast_retries: bool = False
) -> Run:
    cmd = [*HARVESTER, "run", str(config), "--no-progress"]
    if fast_retries:
        cmd = [PY, str(Path(__file__).resolve()), "--run-fast-retries", str(config)]
    if profile_to is not None:
        # pyinstrument samples the main thread: normalise every page there to see it.
        cmd = [PY, "-m", "pyinstrument", "-r", "text", "--show-all", "-o", str(profile_to),
               str(Path(__file__).resolve()), "--run-inline", str(config)]  # fmt: skip
    run = run_child(cmd, work / f"{config.stem}.run.log")
    if run.rc != 0:
        tail = (work / f"{config.stem}.run.log").read_text()[-2000:]
        raise RuntimeError(f"harvester run {config.name} exited {run.rc}:\n{tail}")
    return run


# --------------------------------------------------------------------------- studies


def write_study(
    work: Path,
    name: str,
    *,
    url: str,
    source: str,
    start: date,
    end: date,
    window: str,
    regions: list[str],
    concurrency: int = 5,
    rps: float = 10.0,
    limit: int = 100_000,
    daily_requests: int = BIG,
    daily_records: int = BIG,
) -> Path:
    groups = json.dumps(
        [
            {
                "operator": "and",
                "conditions": [{"field": "region_code", "operator": "in", "field_values": regions}],
            }
        ]
    )
    limit_line = f"limit = {limit}\n" if source != "research-api" else ""
    text = f"""[study]
name = "{name}"
source = "{source}"
start_date = "{start.isoformat()}"
end_date = "{end.isoformat()}"
window = "{window}"
{limit_line}condition_groups = {_toml_inline(groups)}

[api]
base_url = "{url}"
max_concurrency = {concurrency}
requests_per_second = {rps}

[quota]
daily_requests = {daily_requests}
daily_records = {daily_records}

[output]
path = "{name}.data"
partition_by = ["create_date"]
"""
    path = work / f"{name}.toml"
    path.write_text(text)
    return path


def _toml_inline(json_text: str) -> str:
    """JSON arrays of objects as TOML inline tables (keys are plain identifiers here)."""
    return re.sub(r'"(\w+)":', r"\1 =", json_text)


def windows_of(config: Path) -> list[tuple[int, int]]:
    from harvester.config import load_study
    from harvester.plan import plan_study

    return [(s.window.start, s.window.end) for s in plan_study(load_study(config))]


def groups_of(regions: list[str]) -> list[Any]:
    cond = {"field": "region_code", "operator": "in", "field_values": regions}
    return [{"operator": "and", "conditions": [cond]}]


# --------------------------------------------------------------------------- figures


@dataclass(slots=True)
class Sizes:
    quota_days: int
    makespan_windows: int
    cpu_records: int
    memory_records: tuple[int, int]
    plan_years: int
    split_leaves: int
    scale_windows: int = 16
    scale_leaves: int = 500
    enrich_days: int = 14
    s3_windows: int = 8


FULL = Sizes(
    quota_days=90,
    makespan_windows=20,
    cpu_records=1_000_000,
    memory_records=(1_000_000, 5_000_000),
    plan_years=10,
    split_leaves=50_000,
    scale_windows=24,
    scale_leaves=1_000,
    enrich_days=14,
    s3_windows=20,
)
QUICK = Sizes(
    quota_days=28,
    makespan_windows=10,
    cpu_records=150_000,
    memory_records=(150_000, 450_000),
    plan_years=10,
    split_leaves=50_000,
    enrich_days=7,
)
REST_PAGE, RQS_PAGE = 100, 10_000
START = date(2023, 1, 2)


def quota_figures(work: Path, sizes: Sizes) -> list[Figure]:
    """Requests the API charged ÷ the fewest the study's windows need."""
    out: list[Figure] = []
    end = START + timedelta(days=sizes.quota_days - 1)
    for source in ("research-api", "rqs"):
        for profile in ("clean", "flaky"):
            clean = profile == "clean"
            with Simulator(work, QUOTA_FREE, profile=profile) as sim:
                name = f"quota-{source}-{profile}"
                config = write_study(
                    work, name, url=sim.url, source=source, start=START, end=end,
                    window="7d", regions=NL_BE, limit=1000,
                )  # fmt: skip
                counts = [sim.count(groups_of(NL_BE), a, b) for a, b in windows_of(config)]
                if source == "research-api":
                    # One page per 100 records, and one request to learn a window is empty.
                    minimum = sum(max(1, math.ceil(n / REST_PAGE)) for n in counts)
                    empties = sum(1 for n in counts if n == 0)
                else:
                    # A create and its result pages per task (the limit is never reached here).
                    minimum = sum(1 + max(1, math.ceil(n / RQS_PAGE)) for n in counts)
                    empties = 0
                harvest(config, work, fast_retries=not clean)
                spent = sim.quota_requests()
            out.append(
                Figure(
                    f"quota efficiency, {source}, {profile}",
                    "<= 1.02" if clean else "<= 1.5",
                    round(spent / minimum, 4),
                    "requests / minimum",
                    spent / minimum <= (1.02 if clean else 1.5),
                    f"{spent} requests for a minimum of {minimum} over {len(counts)} windows "
                    f"({sum(counts):,} records; {empties} empty windows)",
                )
            )
    return out


#: A year-long study under a small daily quota: run until exit 75, move the simulated clock to
#: the next UTC day, run again (what a scheduler does), with search ids that expire overnight.
YEAR_QUOTA = 100
YEAR_VIDEOS_PER_DAY = 320
#: The codebook's regions of the simulated corpus (Canada is outside the API's scope).
YEAR_REGIONS = [r for r in ALL_REGIONS if r != "CA"]


def quota_days_figures(work: Path, sizes: Sizes) -> list[Figure]:
    """Quota-days a year-long study uses ÷ the fewest its records need, clean and flaky."""
    out: list[Figure] = []
    days = 365 if sizes is FULL else 120
    for profile in ("clean", "flaky"):
        log = work / f"year-{profile}.log"
        cmd = [PY, str(Path(__file__).resolve()), "--run-year", f"{profile}:{days}:{work}"]
        run = run_child(cmd, log)
        if run.rc != 0:
            raise RuntimeError(f"year-long study failed:\n{log.read_text()[-2000:]}")
        result = json.loads(log.read_text().strip().splitlines()[-1])
        ratio = result["quota_days"] / result["minimum_quota_days"]
        out.append(
            Figure(
                f"quota-days ÷ minimum, {days}-day study, {profile}",
                "<= 1.05" if profile == "clean" else "(reported)",
                round(ratio, 3),
                "ratio",
                ratio <= 1.05 if profile == "clean" else None,
                f"{result['charged']:,} requests charged at {YEAR_QUOTA} a day = "
                f"{result['quota_days']:.2f} quota-days ({result['calendar_days']} runs, one a "
                f"day) for a minimum of {result['minimum_quota_days']:.2f}; "
                f"{result['records']:,} records; windows the planner chose: "
                f"{result['window_days']}",
            )
        )
        ok = result["successful"] / result["minimum_requests"]
        out.append(
            Figure(
                f"successful requests ÷ minimum, {days}-day study, {profile}",
                "<= 1.05" if profile == "clean" else "(reported)",
                round(ok, 3),
                "ratio",
                ok <= 1.05 if profile == "clean" else None,
                f"{result['successful']:,} answered for a minimum of "
                f"{result['minimum_requests']:,} (full pages over the study's 30-day windows)",
            )
        )
    return out


def run_year(spec: str) -> int:
    """The year-long study in-process (the simulator's clock is the harvester's): prints one
    JSON line of what it cost."""
    import anyio

    profile, days_text, work_dir = spec.split(":", 2)
    days = int(days_text)

    async def go() -> dict[str, Any]:
        from harvester.api import RetryPolicy
        from harvester.config import Credentials, load_study
        from harvester.orchestrator import EXIT_QUOTA, RunOptions, harvest
        from harvester.plan import plan_study
        from harvester.simulator.testing import running_simulator

        async with running_simulator(
            profile,  # type: ignore[arg-type]
            seed=3,
            videos_per_day=YEAR_VIDEOS_PER_DAY,
            daily_requests=YEAR_QUOTA,
            daily_records=BIG,
            rate_limit_per_minute=10**6,
        ) as sim:
            work = Path(work_dir)
            config = write_study(
                work, f"year-{profile}", url=sim.base_url, source="research-api",
                start=START, end=START + timedelta(days=days - 1), window="30d",
                regions=YEAR_REGIONS, concurrency=1, rps=1000.0, daily_requests=YEAR_QUOTA,
            )  # fmt: skip
            text = config.read_text().replace("[quota]\n", '[quota]\non_exhausted = "exit"\n')
            config.write_text(text)
            study = load_study(config)
            groups = groups_of(YEAR_REGIONS)
            counts = [sim.oracle(groups, s.window.start, s.window.end) for s in plan_study(study)]
            minimum = sum(max(1, math.ceil(len(c) / REST_PAGE)) for c in counts)
            options = RunOptions(
                retry=RetryPolicy(attempts=study.api.max_attempts, wait_scale=0.002),
                retry_delay=0.05,
            )
            creds = Credentials("sim-client-key", "sim-client-secret")
            runs = 0
            while True:
                runs += 1
                code = await harvest(study, creds, options, clock=sim.clock.now)
                if code != EXIT_QUOTA or runs > 10 * days:
                    break
                sim.clock.advance(86_400 - sim.clock.now() % 86_400 + 5)
            if code != 0:
                raise SystemExit(f"harvest exited {code}")
            charged = sum(d["requests"] for d in sim.ledger.snapshot()["days"].values())
            windows = sorted(
                {round((s.end - s.start) / 86_400) for s in _leaves(study) if s.status == "done"}
            )
            return {
                "charged": charged,
                "quota_days": charged / YEAR_QUOTA,
                "minimum_requests": minimum,
                "minimum_quota_days": minimum / YEAR_QUOTA,
                "successful": sim.stats.responses["rest.video_query"][200],
                "calendar_days": runs,
                "records": sum(len(c) for c in counts),
                "window_days": ", ".join(f"{d}d" for d in windows),
            }

    print(json.dumps(anyio.run(go)))
    return 0


def _leaves(study: Any) -> list[Any]:
    from harvester.state import SqliteState

    state = SqliteState(study.state_path)
    try:
        return list(state.shards())
    finally:
        state.close()


#: One `[[enrich]]` block per kind over a two-region study; targets kept small but real.
ENRICH_BLOCKS = """
[[enrich]]
kind = "comments"
where = "comment_count >= 20"
replies = true

[[enrich]]
kind = "users"
where = "region_code = 'NL'"

[[enrich]]
kind = "playlists"
""" + "".join(
    f'\n[[enrich]]\nkind = "{k}"\nwhere = "region_code = \'BE\'"\n'
    for k in ("followers", "following", "liked_videos", "pinned_videos", "reposted_videos")
)
ENRICH_PAGE = 100


def _enrich_minimum(kind: str, rows: dict[str, list[dict[str, Any]]], refused: int) -> int:
    """The fewest calls that fetch these rows: a page per 100 records (one for an empty list),
    one per refused target; comments also a list per comment with replies."""
    per_call = {"users": None, "pinned_videos": None}
    total = refused
    for target, got in rows.items():
        if kind in per_call:
            total += 1
            continue
        if kind == "comments":
            top = [r for r in got if str(r["parent_comment_id"]) == target]
            total += max(1, math.ceil(len(top) / ENRICH_PAGE))
            for c in top:
                if c["reply_count"]:
                    n = sum(1 for r in got if r["parent_comment_id"] == c["id"])
                    total += max(1, math.ceil(n / ENRICH_PAGE))
            continue
        total += max(1, math.ceil(len(got) / ENRICH_PAGE))
    return total


def enrich_targets(work: Path, name: str) -> dict[str, list[Any]]:
    """Each ENRICH_BLOCKS kind's targets in study `name`'s video dataset (its `where`)."""
    import duckdb

    videos = str(work / f"{name}.data" / "**" / "*.parquet")
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT id, username, region_code, comment_count, playlist_id "
        f"FROM read_parquet('{videos}', hive_partitioning = true)"
    ).fetchall()
    con.close()
    targets: dict[str, list[Any]] = {
        "comments": sorted({r[0] for r in rows if r[3] >= 20}),
        "users": sorted({r[1] for r in rows if r[2] == "NL"}),
        "playlists": sorted({r[4] for r in rows if r[4]}),
    }
    for k in ("followers", "following", "liked_videos", "pinned_videos", "reposted_videos"):
        targets[k] = sorted({r[1] for r in rows if r[2] == "BE"})
    return targets


def enrich_figures(work: Path, sizes: Sizes) -> list[Figure]:
    """Requests per record of each enrichment kind, clean and flaky, against its minimum."""

    out: list[Figure] = []
    end = START + timedelta(days=sizes.enrich_days - 1)
    # No quota and no short-term limit binds: what is measured is what the API is asked.
    settings = {
        **QUOTA_FREE,
        "follow_daily_requests": BIG,
        "follow_daily_records": BIG,
        "rate_limit_per_minute": BIG,
    }
    for profile in ("clean", "flaky"):
        clean = profile == "clean"
        with Simulator(work, settings, profile=profile) as sim:
            name = f"enrich-{profile}"
            config = write_study(
                work, name, url=sim.url, source="research-api", start=START, end=end,
                window="7d", regions=NL_BE, rps=200,
            )  # fmt: skip
            config.write_text(config.read_text() + ENRICH_BLOCKS)
            harvest(config, work, fast_retries=not clean)
            stats = sim.stats()
            targets = enrich_targets(work, name)
            for kind, tlist in targets.items():
                want = sim._call(
                    "/_sim/enrich/expected",
                    {"kind": kind, "targets": tlist, "replies": kind == "comments"},
                )
                records = sum(len(v) for v in want["rows"].values())
                minimum = _enrich_minimum(kind, want["rows"], len(want["verdicts"]))
                spent = sum(stats["responses"].get(f"rest.{kind}", {}).values())
                factor = 1.02 if clean else 1.5
                per = max(1, records)
                out.append(
                    Figure(
                        f"enrich {kind}, {profile}",
                        f"<= {factor * minimum / per:.4f}",
                        round(spent / per, 4),
                        "requests / record",
                        spent <= factor * minimum,
                        f"{spent} requests for {records:,} records of {len(tlist)} targets "
                        f"({len(want['verdicts'])} refused); minimum {minimum} "
                        f"({spent / max(1, minimum):.3f}x)",
                    )
                )
    return out


#: A `pyrqs` package standing for TikTok's SDK: the drop-in, configured from the environment.
PYRQS_STANDIN = (
    "from harvester import rqs as _dropin\n\n\ndef RQSClient():\n    return _dropin.RQSClient()\n"
)


def enrich_pyrqs_figures(work: Path, sizes: Sizes) -> list[Figure]:
    """Requests per record of each enrichment kind through the VCE's categories (a pyrqs
    study, the SDK played by the drop-in), clean, against the fewest its batches need: a
    create per 100 targets and a result page per 10,000 records (at least one a task)."""

    from harvester.plan.enrich import VCE_BATCH_TARGETS

    out: list[Figure] = []
    end = START + timedelta(days=sizes.enrich_days - 1)
    sdk = work / "pyrqs-standin"
    (sdk / "pyrqs").mkdir(parents=True, exist_ok=True)
    (sdk / "pyrqs" / "__init__.py").write_text("")
    (sdk / "pyrqs" / "rqs.py").write_text(PYRQS_STANDIN)
    settings = {**QUOTA_FREE, "rate_limit_per_minute": BIG, "rqs_processing": 0.05}
    with Simulator(work, settings) as sim:
        env = {**ENV, "TIKTOK_API_BASE_URL": sim.url,
               "PYTHONPATH": os.pathsep.join((str(sdk), str(ROOT)))}  # fmt: skip
        name = "enrich-pyrqs"
        config = write_study(
            work, name, url=sim.url, source="pyrqs", start=START, end=end, window="7d",
            regions=NL_BE, rps=200,
        )  # fmt: skip
        videos_only = config.read_text()
        run = run_child([*HARVESTER, "run", str(config), "--no-progress"], work / "pv.log", env=env)
        assert run.rc == 0, (work / "pv.log").read_text()[-2000:]
        targets = enrich_targets(work, name)
        blocks = [b for b in ENRICH_BLOCKS.split("[[enrich]]") if b.strip()]
        for block in blocks:
            kind = re.search(r'kind = "(\w+)"', block)
            assert kind is not None
            kind_name = kind.group(1)
            tlist = targets[kind_name]
            # The videos are done: this run spends only the kind's tasks.
            config.write_text(videos_only + "\n[[enrich]]" + block)
            before = sim.quota_requests()
            log = work / f"pyrqs-{kind_name}.log"
            run = run_child([*HARVESTER, "run", str(config), "--no-progress"], log, env=env)
            assert run.rc == 0, log.read_text()[-2000:]
            spent = sim.quota_requests() - before
            want = sim._call(
                "/_sim/enrich/expected",
                {"kind": kind_name, "targets": tlist, "replies": kind_name == "comments"},
            )
            records = sum(len(v) for v in want["rows"].values())
            tasks = math.ceil(len(tlist) / VCE_BATCH_TARGETS)
            minimum = tasks + max(tasks, math.ceil(records / RQS_PAGE))
            per = max(1, records)
            out.append(
                Figure(
                    f"enrich {kind_name}, pyrqs, clean",
                    f"<= {1.02 * minimum / per:.6f}",
                    round(spent / per, 6),
                    "requests / record",
                    spent <= 1.02 * minimum,
                    f"{spent} requests for {records:,} records of {len(tlist)} targets "
                    f"({len(want['verdicts'])} refused: no rows, outcome empty); minimum "
                    f"{minimum} ({tasks} task(s)); the endpoints' minimum for the same rows "
                    f"{_enrich_minimum(kind_name, want['rows'], len(want['verdicts']))}",
                )
            )
    return out


#: Simulated service times for the makespan figure: ~150 ms a request, 6 s a task.
LATENCY = 0.15
TASK = {"rqs_created": 0.5, "rqs_validating": 1.5, "rqs_processing": 4.0}
TASK_CAP, RATE_PER_MINUTE = 5, 600


def makespan_figures(work: Path, sizes: Sizes) -> list[Figure]:
    """Wall time ÷ the bound the rate limit, the task cap and the page chain set."""
    n = sizes.makespan_windows
    end = START + timedelta(days=n - 1)
    settings: dict[str, float] = {
        "latency": LATENCY,
        "videos_per_day": 3_000,
        "max_running_tasks": TASK_CAP,
        "rate_limit_per_minute": RATE_PER_MINUTE,
        "daily_requests": BIG,
        "daily_records": BIG,
        **TASK,
    }
    task_s = sum(TASK.values())
    with Simulator(work, settings) as sim:
        config = write_study(
            work, "makespan", url=sim.url, source="rqs", start=START, end=end, window="1d",
            regions=ALL_REGIONS, concurrency=TASK_CAP, rps=RATE_PER_MINUTE / 60,
        )  # fmt: skip
        windows = windows_of(config)
        counts = [sim.count(groups_of(ALL_REGIONS), a, b) for a, b in windows]
        pages = [max(1, math.ceil(c / RQS_PAGE)) for c in counts]
        run = harvest(config, work)
        stats = sim.stats()["responses"]
    requests = len(windows) + sum(pages)  # creates and result pages: the fewest possible
    # Latency is drawn from ±20 %: the bound takes its lower edge.
    lat = LATENCY * 0.8
    bound_cap = lat + math.ceil(len(windows) / TASK_CAP) * task_s + lat * max(pages)
    bound_rate = requests / (RATE_PER_MINUTE / 60)
    bound_chain = max(lat + task_s + lat * p for p in pages)
    bound = max(bound_cap, bound_rate, bound_chain)
    polls = sum(stats.get("rqs.status", {}).values())
    figures = [
        Figure(
            "makespan ÷ bound, rqs",
            "<= 1.10",
            round(run.wall / bound, 3),
            "ratio",
            run.wall / bound <= 1.10,
            f"{run.wall:.1f} s against a bound of {bound:.1f} s (task cap {bound_cap:.1f} s, "
            f"rate limit {bound_rate:.1f} s, longest chain {bound_chain:.1f} s); "
            f"{len(windows)} tasks of {task_s:g} s, {polls} status polls",
        )
    ]
    # The status quo: the seed's blocking loop through the drop-in SDK, one task at a time.
    with Simulator(work, settings) as sim:
        script = work / "status_quo.py"
        script.write_text(_STATUS_QUO.format(windows=windows, groups=groups_of(ALL_REGIONS)))
        env = {**ENV, "TIKTOK_API_BASE_URL": sim.url}
        quo = run_child([PY, str(script)], work / "status_quo.log", env=env)
        if quo.rc != 0:
            raise RuntimeError(f"status quo loop failed: {(work / 'status_quo.log').read_text()}")
    figures.append(
        Figure(
            "status quo (blocking SDK loop) ÷ harvester makespan",
            "(reported)",
            round(quo.wall / run.wall, 2),
            "ratio",
            None,
            f"{quo.wall:.1f} s for the same {len(windows)} windows one task at a time",
        )
    )
    return figures


_STATUS_QUO = """\
from harvester import rqs
from harvester.fields import DEFAULT_FIELDS

client = rqs.RQSClient()
rows = 0
for start, end in {windows!r}:
    groups = {groups!r} + [{{"operator": "and", "conditions": [
        {{"field": "create_time", "operator": "gte", "field_values": [str(start)]}},
        {{"field": "create_time", "operator": "lt", "field_values": [str(end)]}}]}}]
    rows += len(client.query("video", groups, ",".join(DEFAULT_FIELDS), 100_000))
client.close()
print(rows)
"""


def _big_study(work: Path, sim: Simulator, name: str, records: int, per_day: int) -> Path:
    days = max(1, round(records / per_day))
    return write_study(
        work, name, url=sim.url, source="rqs", start=START,
        end=START + timedelta(days=days - 1), window="2d", regions=ALL_REGIONS,
    )  # fmt: skip


def _rows(sim: Simulator) -> int:
    return int(sim.stats()["records_delivered"])


def cpu_memory_figures(
    work: Path, sizes: Sizes, *, cpu: bool, memory: bool, profile: bool
) -> tuple[list[Figure], str]:
    """Harvester CPU per record against the floor, and peak RSS at two study sizes."""
    per_day = 20_000
    fast = {"daily_requests": BIG, "daily_records": BIG, "videos_per_day": per_day,
            "rqs_created": 0.01, "rqs_validating": 0.01, "rqs_processing": 0.03}  # fmt: skip
    out: list[Figure] = []
    profile_text = ""
    runs: dict[int, Run] = {}
    delivered: dict[int, int] = {}
    wanted = sorted({*(sizes.memory_records if memory else ()), *([sizes.cpu_records] * cpu)})
    for records in wanted:
        with Simulator(work, fast) as sim:
            config = _big_study(work, sim, f"rqs-{records}", records, per_day)
            run = harvest(config, work)
            runs[records] = run
            rows = delivered[records] = _rows(sim)
            shutil.rmtree(work / f"rqs-{records}.data", ignore_errors=True)
        if cpu and records == sizes.cpu_records:
            # Both floors, each against a fresh simulator; the cheaper per record is the floor.
            floors: dict[str, tuple[float, int, float]] = {}
            for decoder in ("orjson", "arrow"):
                with Simulator(work, fast) as sim:
                    config = _big_study(work, sim, f"floor-{decoder}-{records}", records, per_day)
                    log = work / f"floor-{decoder}.log"
                    floor = run_child(
                        [PY, str(ROOT / "scripts" / "bench_floor.py"), str(config),
                         str(work / "floor.parquet"), decoder],
                        log,
                    )  # fmt: skip
                    if floor.rc != 0:
                        raise RuntimeError(log.read_text()[-2000:])
                    floor_rows = _rows(sim)
                floors[decoder] = (floor.cpu / floor_rows * 1e6, floor_rows, floor.cpu)
            best = min(floors, key=lambda d: floors[d][0])
            floor_per_m, floor_rows, floor_cpu = floors[best]
            per_m = run.cpu / rows * 1e6
            out.append(
                Figure(
                    "CPU per record ÷ floor",
                    "<= 1.5",
                    round(per_m / floor_per_m, 3),
                    "ratio",
                    per_m / floor_per_m <= 1.5,
                    f"harvester {per_m:.2f} CPU s per million records ({run.cpu:.1f} s for "
                    f"{rows:,}); floor ({best} decoder) {floor_per_m:.2f} ({floor_cpu:.1f} s "
                    f"for {floor_rows:,}); "
                    + ", ".join(f"{d} floor {v[0]:.2f}" for d, v in floors.items()),
                )
            )
            out.append(
                Figure(
                    "records per CPU-second, rqs result pages",
                    ">= 100000",
                    round(rows / run.cpu),
                    "records/s",
                    rows / run.cpu >= 100_000,
                    f"whole process, start-up included; wall {run.wall:.1f} s",
                )
            )
    if memory:
        small, large = sizes.memory_records
        for records in (small, large):
            out.append(
                Figure(
                    f"peak RSS, {records / 1e6:g}M-record study",
                    "<= 300",
                    round(runs[records].maxrss_mb, 1),
                    "MB",
                    runs[records].maxrss_mb <= 300,
                )
            )
        # Steady state: the larger study's extra records over its extra CPU, so start-up and
        # other fixed costs cancel out.
        extra_cpu = runs[large].cpu - runs[small].cpu
        extra_rows = delivered[large] - delivered[small]
        if extra_cpu > 0 and extra_rows > 0:
            out.append(
                Figure(
                    "records per CPU-second, steady state (larger − smaller study)",
                    "(reported)",
                    round(extra_rows / extra_cpu),
                    "records/s",
                    None,
                    f"{extra_rows:,} more records for {extra_cpu:.1f} more CPU s",
                )
            )
        growth = runs[large].maxrss_mb / runs[small].maxrss_mb
        out.append(
            Figure(
                f"peak RSS {large / 1e6:g}M ÷ {small / 1e6:g}M",
                "<= 1.10",
                round(growth, 3),
                "ratio",
                growth <= 1.10,
            )
        )
    if profile:
        records = min(sizes.cpu_records, 200_000)
        with Simulator(work, fast) as sim:
            config = _big_study(work, sim, f"profile-{records}", records, per_day)
            report = work / "profile.txt"
            harvest(config, work, profile_to=report)
            profile_text = summarise_profile(report.read_text())
    return out, profile_text


def summarise_profile(text: str, lines: int = 40, floor: float = 0.02) -> str:
    """pyinstrument's call tree flattened to the frames worth reading: every harvester, Arrow and
    built-in frame taking at least `floor` of the run, without the event loop's plumbing or
    machine paths."""
    rows = [re.sub(r"^[\s│├└─]+", "", line) for line in text.splitlines()]
    timed = [(float(m.group(1)), m.group(2)) for r in rows if (m := re.match(r"([\d.]+) (.+)", r))]
    if not timed:
        return ""
    total = timed[0][0]
    keep = []
    for seconds, raw in timed:
        frame = re.sub(r"\S*/(?=harvester/|pyarrow/)", "", raw)  # from the package down only
        if seconds < floor * total or re.search(r"asyncio|anyio|click|importlib|frozen", raw):
            continue
        if "harvester/" in raw or "<built-in>" in raw or "pyarrow/" in raw:
            keep.append(f"{seconds:7.2f} s  {100 * seconds / total:5.1f} %  {frame}")
    return "\n".join([f"{total:7.2f} s  100.0 %  (whole run)", *keep[:lines]])


def plan_figures(work: Path, sizes: Sizes) -> list[Figure]:
    """`plan` and `status` wall time for ten years in 1-day windows, before and after splits."""
    from harvester.config import load_study
    from harvester.plan import Window, plan_study, split_window
    from harvester.state import PlannedShard, SqliteState

    first = date(2016, 1, 1)
    end = first + timedelta(days=3650 * sizes.plan_years // 10 - 1)
    config = write_study(
        work, "plan-scale", url="http://127.0.0.1:9", source="research-api",
        start=first, end=end, window="1d", regions=NL_BE,
    )  # fmt: skip
    study = load_study(config)

    def cli(verb: str) -> float:
        best = math.inf
        for _ in range(3):  # the best of three: the machine is shared
            r = run_child([*HARVESTER, verb, str(config)], work / f"{verb}.log")
            if r.rc != 0:
                raise RuntimeError((work / f"{verb}.log").read_text())
            best = min(best, r.wall)
        return best

    baseline = min(run_child([PY, "-c", "pass"], work / "pass.log").wall for _ in range(3))
    out: list[Figure] = []

    def figure(what: str, seconds: float, shards: int) -> Figure:
        return Figure(
            f"{what}, {shards:,} shards",
            "< 1.0",
            round(seconds, 3),
            "s",
            seconds < 1.0,
            f"{seconds / baseline:.1f}× `python -c pass` ({baseline * 1000:.0f} ms)",
        )

    plan = plan_study(study)
    out.append(figure("plan", cli("plan"), len(plan)))
    state = SqliteState(study.state_path)
    state._db.execute("PRAGMA synchronous=OFF")  # set-up only: the figures read, never write
    state.open_study(study.name, study.plan_fingerprint(), "bench")
    state.add_plan_shards(PlannedShard(s.key, s.window.start, s.window.end) for s in plan)
    out.append(figure("status", cli("status"), len(plan)))
    leaves = [Window(s.window.start, s.window.end) for s in plan]
    while len(leaves) < sizes.split_leaves:
        grown: list[Window] = []
        for i, w in enumerate(leaves):
            halves = split_window(w, min_seconds=1)
            if halves is None or len(leaves) + len(grown) - i >= sizes.split_leaves:
                grown.append(w)
                continue
            state.split(w.key, [PlannedShard(h.key, h.start, h.end) for h in halves])
            grown.extend(halves)
        leaves = grown
    state.close()
    out.append(figure("plan", cli("plan"), len(leaves)))
    out.append(figure("status", cli("status"), len(leaves)))
    return out


# --------------------------------------------------------------------------- scale-out

#: The lab's PostgreSQL for the scale-out figures (a database is created and dropped per run).
PG_ADMIN = os.environ.get("HARVESTER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
#: Service times for the workers figure: short tasks, and a running-task cap that does not bind,
#: so what one worker's own concurrency allows is what more workers can add to.
SCALE_TASK = {"rqs_created": 0.2, "rqs_validating": 0.8, "rqs_processing": 2.0}
SCALE_CONCURRENCY = 2


class Database:
    """A fresh PostgreSQL database for one figure, dropped afterwards."""

    def __init__(self, name: str) -> None:
        self.name = f"harvester_bench_{name}_{os.getpid()}"
        base = PG_ADMIN.rsplit("/", 1)[0]
        self.url = f"{base}/{self.name}"

    def __enter__(self) -> Database:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc: object) -> None:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def _workers_makespan(work: Path, windows: int, workers: int) -> tuple[float, int]:
    """Wall time of one RQS study harvested by `workers` processes at once; rows written."""
    settings: dict[str, float] = {
        "latency": 0.05,
        "videos_per_day": 2_000,
        "max_running_tasks": 100,
        "rate_limit_per_minute": 100_000,
        **QUOTA_FREE,
        **SCALE_TASK,
    }
    end = START + timedelta(days=windows - 1)
    with Simulator(work, settings) as sim, Database(f"w{workers}") as db:
        config = write_study(
            work, f"scale-{workers}", url=sim.url, source="rqs", start=START, end=end,
            window="1d", regions=ALL_REGIONS, concurrency=SCALE_CONCURRENCY, rps=1000,
        )  # fmt: skip
        with config.open("a") as f:
            f.write(f'\n[state]\nurl = "{db.url}"\nlease_s = 10\n')
        t0 = time.perf_counter()
        procs = []
        for i in range(workers):
            log = (work / f"scale-{workers}-{i}.log").open("w")
            cmd = [*HARVESTER, "run", str(config), "--no-progress"]
            procs.append(
                subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=ROOT)
            )
        codes = [p.wait() for p in procs]
        wall = time.perf_counter() - t0
        if any(codes):
            tails = "".join(
                (work / f"scale-{workers}-{i}.log").read_text()[-1500:]
                for i, c in enumerate(codes)
                if c
            )
            raise RuntimeError(f"workers exited {codes}:\n{tails}")
        rows = _rows(sim)
    return wall, rows


def _lease_overhead(leaves: int) -> tuple[float, float]:
    """Milliseconds per leaf of claim + checkpoint + done: PostgreSQL (lease, SKIP LOCKED) and
    SQLite (the single runner's start + checkpoint + done) for reference."""
    from harvester.state import PlannedShard, SqliteState
    from harvester.state.postgres import PostgresState

    plan = [PlannedShard(f"k{i:05d}", i * 86_400, (i + 1) * 86_400) for i in range(leaves)]
    with Database("lease") as db, PostgresState(db.url, study="bench") as pg:
        pg.open_study("bench", "fp", "bench")
        pg.add_plan_shards(plan)
        t0 = time.perf_counter()
        while (leaf := pg.claim_leaf()) is not None:
            pg.start_leaf(leaf.key)
            pg.checkpoint_page(leaf.key, segment=f"{leaf.key}/0.arrow", rows=100, cursor=None)
            pg.mark_done(leaf.key)
        pg_ms = (time.perf_counter() - t0) * 1000 / leaves
    with tempfile.TemporaryDirectory() as tmp, SqliteState(Path(tmp) / "s.sqlite") as lite:
        lite.open_study("bench", "fp", "bench")
        lite.add_plan_shards(plan)
        t0 = time.perf_counter()
        for s in plan:
            lite.start_leaf(s.key)
            lite.checkpoint_page(s.key, segment=f"{s.key}/0.arrow", rows=100, cursor=None)
            lite.mark_done(s.key)
        lite_ms = (time.perf_counter() - t0) * 1000 / leaves
    return pg_ms, lite_ms


def _reservations(threads: int, seconds: float, cap: int) -> tuple[float, int, int]:
    """Reservations per second granted by one pool's ledger to `threads` workers at once (each
    its own connection pool, as separate processes would be); then, with a cap, how many were
    granted against how many the cap allows."""
    import threading

    from harvester.state.postgres import PostgresState

    with Database("ledger") as db:
        stores = [
            PostgresState(db.url, study=f"s{i % 2}", pool="lab", daily_requests=10**9)
            for i in range(threads)
        ]
        counts = [0] * threads
        stop = time.perf_counter() + seconds

        def hammer(i: int) -> None:
            while time.perf_counter() < stop:
                counts[i] += stores[i].reserve("2030-01-01")

        pool = [threading.Thread(target=hammer, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        rate = sum(counts) / seconds
        for s in stores:
            s.quota.daily_requests = cap
        granted = [0] * threads

        def spend(i: int) -> None:
            granted[i] = sum(stores[i].reserve("2030-01-02") for _ in range(cap // threads + 50))

        pool = [threading.Thread(target=spend, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        for s in stores:
            s.close()
    return rate, sum(granted), cap


def scale_figures(work: Path, sizes: Sizes) -> list[Figure]:
    """One RQS study by 1, 2 and 4 workers; lease cost per leaf; ledger under contention."""
    windows = sizes.scale_windows
    out: list[Figure] = []
    walls: dict[int, float] = {}
    rows: dict[int, int] = {}
    for n in (1, 2, 4):
        walls[n], rows[n] = _workers_makespan(work, windows, n)
    for n in (1, 2, 4):
        out.append(
            Figure(
                f"makespan, rqs, {n} worker{'s' if n > 1 else ''}",
                "(reported)",
                round(walls[n], 2),
                "s",
                None,
                f"{windows} one-day tasks of {sum(SCALE_TASK.values()):g} s, "
                f"{SCALE_CONCURRENCY} tasks in flight per worker, {rows[n]:,} rows; "
                f"{walls[1] / walls[n]:.2f}× the one-worker speed",
            )
        )
    pg_ms, lite_ms = _lease_overhead(sizes.scale_leaves)
    out.append(
        Figure(
            "lease overhead per leaf (claim, checkpoint, done), PostgreSQL",
            "(reported)",
            round(pg_ms, 2),
            "ms",
            None,
            f"{sizes.scale_leaves} leaves; SQLite's start, checkpoint and done: {lite_ms:.2f} ms",
        )
    )
    rate, granted, cap = _reservations(8, 3.0, 2_000)
    out.append(
        Figure(
            "ledger reservations per second, 8 workers on one pool",
            "(reported)",
            round(rate),
            "reservations/s",
            None,
            f"8 connections reserving at once for 3 s; with a cap of {cap}: {granted} granted",
        )
    )
    out.append(
        Figure(
            "pool cap held under contention",
            f"= {cap}",
            granted,
            "requests granted",
            granted == cap,
            "8 workers asking for more than the cap together",
        )
    )
    return out


def s3_figures(work: Path, sizes: Sizes) -> list[Figure]:
    """The same study harvested into a local folder and into an S3 bucket (moto's server on
    loopback): the wall-time ratio is what uploads, listings and reads over HTTP add."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from chaos_workers import Bucket  # here: chaos_workers imports this module

    windows = sizes.s3_windows
    settings: dict[str, float] = {
        "latency": 0.02,
        "videos_per_day": 4_000,
        "rate_limit_per_minute": 100_000,
        **QUOTA_FREE,
    }
    end = START + timedelta(days=windows - 1)
    walls: dict[str, float] = {}
    rows: dict[str, int] = {}
    bucket = Bucket(work, name="bench-s3")
    try:
        for where in ("folder", "s3"):
            with Simulator(work, settings) as sim:
                config = write_study(
                    work, f"s3-{where}", url=sim.url, source="research-api", start=START,
                    end=end, window="1d", regions=ALL_REGIONS, concurrency=4, rps=1000,
                )  # fmt: skip
                if where == "s3":
                    text = config.read_text().replace(
                        'path = "s3-s3.data"', f'path = "{bucket.url("s3-s3")}"'
                    )
                    config.write_text(text)
                log = (work / f"s3-{where}.log").open("w")
                t0 = time.perf_counter()
                code = subprocess.run(
                    [*HARVESTER, "run", str(config), "--no-progress"],
                    stdout=log, stderr=subprocess.STDOUT, env=bucket.env, cwd=ROOT, check=False,
                ).returncode  # fmt: skip
                walls[where] = time.perf_counter() - t0
                if code:
                    raise RuntimeError(f"{where}: exited {code}: see {log.name}")
                rows[where] = _rows(sim)
    finally:
        bucket.close()
    ratio = walls["s3"] / walls["folder"]
    return [
        Figure(
            "dataset in S3 against a local folder, wall time",
            "(reported)",
            round(ratio, 2),
            "×",
            None,
            f"{windows} one-day windows, {rows['s3']:,} records, public API at 20 ms a call; "
            f"folder {walls['folder']:.1f} s, S3 (moto on loopback) {walls['s3']:.1f} s",
        )
    ]


# --------------------------------------------------------------------------- report


def machine() -> dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo") as f:  # noqa: PTH123 - Linux only, as the bench is
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.machine()}",
    }


def table(figures: list[Figure]) -> str:
    rows = [("figure", "target", "measured", "unit", "met")]
    for f in figures:
        met = "—" if f.met is None else ("yes" if f.met else "NO")
        rows.append((f.figure, f.target, f"{f.measured:,}", f.unit, met))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(figures: list[Figure], info: dict[str, str], profile: str, minutes: float) -> str:
    out = [
        f"Measured {time.strftime('%Y-%m-%d')} on {info['nproc']} cores ({info['cpu']}), "
        f"Python {info['python']}, {info['system']}; `make bench` took {minutes:.1f} min.",
        "",
        "| figure | target | measured | unit | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for f in figures:
        met = "—" if f.met is None else ("yes" if f.met else "**no**")
        out.append(f"| {f.figure} | {f.target} | {f.measured:,} | {f.unit} | {met} |")
    out += ["", "Details:", ""]
    out += [f"- {f.figure}: {f.note}" for f in figures if f.note]
    if profile:
        out += ["", "Profile of a harvester run (pyinstrument, wall clock):", "", "```", profile,
                "```"]  # fmt: skip
    return "\n".join(out)


def update_doc(section: str) -> None:
    text = DOC.read_text() if DOC.exists() else f"# Benchmarks\n\n{MARK_START}\n{MARK_END}\n"
    head, _, rest = text.partition(MARK_START)
    _, _, tail = rest.partition(MARK_END)
    DOC.write_text(f"{head}{MARK_START}\n{section}\n{MARK_END}{tail}")


STEPS = ("quota", "quotadays", "makespan", "cpu", "memory", "plan", "scale", "enrich", "s3")


def run_fast_retries(config: str) -> int:
    """`harvester run` with the same retry policy, only its waits scaled down: the flaky quota
    figures count requests, and the simulator's faults do not depend on time."""
    from harvester.api import RetryPolicy
    from harvester.config import load_study, resolve_credentials
    from harvester.orchestrator import RunOptions, run_study

    study = load_study(config)
    options = RunOptions(
        retry=RetryPolicy(attempts=study.api.max_attempts, wait_scale=0.002), retry_delay=0.1
    )
    return run_study(study, resolve_credentials(study), options)


def run_inline(config: str) -> int:
    """`harvester run` with every page decoded and normalised on the event loop's thread, where
    the sampler (main thread only) sees them: a profile, not a timing."""
    from harvester import cli
    from harvester.api import _http
    from harvester.orchestrator import _leaf

    _leaf.THREAD_ROWS = 1 << 62
    _http.THREAD_BYTES = 1 << 62
    return int(cli.main(["run", config, "--no-progress"], standalone_mode=False) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up children on the way out
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller studies; write nothing")
    parser.add_argument(
        "--only", default=",".join(STEPS), help="comma-separated: " + ",".join(STEPS)
    )
    parser.add_argument("--profile", action="store_true", help="profile a harvest (pyinstrument)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--run-fast-retries", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--run-inline", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--run-year", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_year:
        return run_year(args.run_year)
    if args.run_inline:
        return run_inline(args.run_inline)
    if args.run_fast_retries:
        return run_fast_retries(args.run_fast_retries)
    steps = set(args.only.split(","))
    unknown = steps - set(STEPS)
    if unknown:
        parser.error(f"unknown steps: {', '.join(sorted(unknown))}")
    sizes = QUICK if args.quick else FULL
    full = not args.quick and steps == set(STEPS)
    profile = args.profile or full
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="harvester-bench-"))
    figures: list[Figure] = []
    profile_text = ""
    try:
        jobs: list[tuple[str, Callable[[], list[Figure]]]] = [
            ("quota", lambda: quota_figures(work, sizes)),
            ("quotadays", lambda: quota_days_figures(work, sizes)),
            ("makespan", lambda: makespan_figures(work, sizes)),
            ("plan", lambda: plan_figures(work, sizes)),
            ("scale", lambda: scale_figures(work, sizes)),
            ("enrich", lambda: enrich_figures(work, sizes) + enrich_pyrqs_figures(work, sizes)),
            ("s3", lambda: s3_figures(work, sizes)),
        ]
        for name, job in jobs:
            if name in steps:
                print(f"bench: {name} ...", file=sys.stderr, flush=True)
                figures += job()
        if steps & {"cpu", "memory"}:
            print("bench: cpu and memory ...", file=sys.stderr, flush=True)
            more, profile_text = cpu_memory_figures(
                work, sizes, cpu="cpu" in steps, memory="memory" in steps, profile=profile
            )
            figures += more
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"bench: work directory kept: {work}", file=sys.stderr)
    print(table(figures))
    for f in figures:
        if f.note:
            print(f"  {f.figure}: {f.note}")
    if profile_text:
        print(profile_text)
    if full:
        RESULTS.parent.mkdir(exist_ok=True)
        rows = [{k: v for k, v in asdict(f).items() if k != "note"} for f in figures]
        RESULTS.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        minutes = (time.monotonic() - started) / 60
        update_doc(markdown(figures, machine(), profile_text, minutes))
        print(f"bench: wrote {RESULTS.relative_to(ROOT)} and {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
