"""`make chaos`: SIGKILL `harvester run` at the moments that matter, restart, lose nothing.

`harvester run` runs in its own process against `harvester simulate --profile flaky` in another.
Each run is killed (SIGKILL: no handler, no clean-up) at a moment picked from the run's own JSON
log as it is written:

    start-up     during recovery and planning, before or while the first requests go out (at a
                 random instant, at the latest when the first window is submitted)
    page         just after the n-th page_fetched: the next pages are in flight or being staged
    checkpoint   the instant a page_fetched lands: the next page's checkpoint may be committing
    finalize     just after a shard_done: a plan shard's files are being written or renamed
    landed       the instant a file_committed lands: a file just renamed into place
    compaction   the instant a compaction_swapped lands: merged file swapped, state not yet told

After every kill the dataset as it stands must be readable by pyarrow and DuckDB, with no
duplicate row and no partial or temporary file visible to them. Then the run is restarted. A
round is one study run to completion this way; rounds repeat until the kills are spent. Each
round ends with the dataset equal to the simulator's oracle and `harvester verify` passing.

Requests: every 200 page answer the simulator sent must end in a page_fetched event of some run,
except those a crash lost; a crash may lose at most one page per leaf in flight at the kill
(the bound is asserted). A crash-free run of the same studies against a clean simulator gives
the requests the study needs, for comparison.

    python scripts/chaos.py --kills 200            # the long run (make chaos)
    python scripts/chaos.py --kills 20 --seed 7    # what CI runs (tests/reliability)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq

PY = sys.executable
HARVESTER = [PY, "-m", "harvester.cli"]
ENV = {
    **os.environ,
    "TIKTOK_CLIENT_KEY": "sim-client-key",
    "TIKTOK_CLIENT_SECRET": "sim-client-secret",
}
CONCURRENCY = 4
MOMENTS = ("start-up", "page", "checkpoint", "finalize", "landed", "compaction")
#: Moments every run from nothing reaches: one a run finished before (a resumed run with little
#: left) is dealt again to the next run, the first of a new round, so each lands whatever the
#: machine's speed. (A round spans two months or more, so it lands two files at least; it may
#: end without compacting one.)
REACHED = ("start-up", "page", "checkpoint", "finalize", "landed")
#: A moment missed this many times in a row is let go (a guard: runs from nothing reach them).
REDEALS = 3
#: Quotas that never bind: chaos is about crashes, the quota has its own tests.
BIG = 10**9
REGIONS = ["NL", "BE"]
ROUND_DAYS = 56
#: The simulator's videos are dated 2022-01-01 up to 2025-01-01 (its default corpus).
CORPUS_FIRST = date(2022, 1, 3)
CORPUS_DAYS = (date(2024, 12, 31) - CORPUS_FIRST).days - ROUND_DAYS
RUN_TIMEOUT = 180.0

SOURCES = ("research-api", "rqs")
#: The simulator's endpoint whose 200 answers are result pages, per source.
PAGE_ENDPOINT = {"research-api": "rest.video_query", "rqs": "rqs.result"}

STUDY = """\
[study]
name = "chaos-{round}"
source = "{source}"
start_date = "{start}"
end_date = "{end}"
window = "7d"
{limit}condition_groups = [
  {{ operator = "and", conditions = [
    {{ field = "region_code", operator = "in", field_values = {regions} }},
  ] }},
]

[api]
base_url = "{base_url}"
max_concurrency = {concurrency}
requests_per_second = 500
timeout_s = 1
max_attempts = 8
retry_wait_s = 0.01
retry_wait_max_s = 0.2

[quota]
daily_requests = {big}
daily_records = {big}

[output]
path = "data"
partition_by = ["create_month"]
"""


# --------------------------------------------------------------------------- the simulator


class Simulator:
    """`harvester simulate` in its own process on a free loopback port."""

    def __init__(self, work: Path, profile: str, seed: int, *, latency: float = 0.0) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self._err = (work / f"simulator-{profile}.log").open("w")
        cmd = [*HARVESTER, "simulate", "--port", "0", "--seed", str(seed), "--profile", profile]
        cmd += ["--latency", str(latency)]
        for name in ("daily_requests", "daily_records", "rate_limit_per_minute"):
            cmd += ["--set", f"{name}={BIG}"]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._err, text=True, env=ENV
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("simulator listening on "):
            self.close()
            raise RuntimeError(f"the simulator did not start: {line!r}")
        self.url = line.split()[-1]

    def get(self, route: str) -> Any:
        with urllib.request.urlopen(self.url + route, timeout=30) as r:
            return json.load(r)

    def post(self, route: str, body: Any) -> Any:
        req = urllib.request.Request(
            self.url + route, data=json.dumps(body).encode(), method="POST"
        )
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._err.close()


# --------------------------------------------------------------------------- the dataset


def visible_files(root: Path) -> list[Path]:
    """The Parquet files a reader globbing the dataset sees (hidden and `_` names are not)."""
    if not root.is_dir():
        return []
    return sorted(
        p
        for p in root.rglob("*.parquet")
        if not any(part.startswith((".", "_")) for part in p.relative_to(root).parts)
    )


def check_readable(root: Path) -> int:
    """Assert the dataset as it stands is whole: every visible file complete, pyarrow and DuckDB
    agree, no id twice, no temporary file under a visible name. Returns its rows."""
    if not root.is_dir():
        return 0
    for p in root.rglob("*"):
        rel = p.relative_to(root).parts
        hidden = any(part.startswith((".", "_")) for part in rel)
        if p.is_file() and not hidden and not p.name.endswith(".parquet"):
            raise AssertionError(f"a non-Parquet file is visible in the dataset: {p}")
    files = visible_files(root)
    if not files:
        return 0
    for f in files:
        pq.ParquetFile(f).metadata  # noqa: B018 - a partial file has no footer: this raises
    arrow = ds.dataset(root, format="parquet", partitioning="hive").to_table(columns=["id"])
    con = duckdb.connect()
    try:
        rows, distinct = con.execute(
            "SELECT count(*), count(DISTINCT id) FROM read_parquet(?, hive_partitioning = true)",
            [str(root / "**" / "*.parquet")],
        ).fetchone() or (0, 0)
    finally:
        con.close()
    if arrow.num_rows != rows:
        raise AssertionError(f"pyarrow reads {arrow.num_rows} rows, DuckDB {rows}")
    if distinct != rows:
        raise AssertionError(f"{rows - distinct} duplicate rows visible in {root}")
    return int(rows)


def dataset_ids(root: Path) -> list[int]:
    files = visible_files(root)
    if not files:
        return []
    con = duckdb.connect()
    try:
        got = con.execute(
            "SELECT id FROM read_parquet(?, hive_partitioning = true)",
            [str(root / "**" / "*.parquet")],
        ).fetchall()
    finally:
        con.close()
    return [int(r[0]) for r in got]


# --------------------------------------------------------------------------- runs


@dataclass(slots=True)
class Kill:
    round: int
    run: int
    moment: str
    at_event: str | None
    seconds: float
    leaves_in_flight: int
    rows_visible: int


@dataclass(slots=True)
class Report:
    seed: int
    kills_asked: int
    kills: list[Kill] = field(default_factory=list)
    rounds: int = 0
    runs: int = 0
    records: int = 0
    records_lost: int = 0
    extra_records: int = 0
    page_answers: int = 0
    pages_checkpointed: int = 0
    pages_lost_to_crashes: int = 0
    leaves_in_flight_at_kills: int = 0
    leaves_resumed: int = 0
    requests: int = 0
    clean_requests: int = 0
    clean_page_answers: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    moments: dict[str, int] = field(default_factory=dict)
    #: Moments dealt to a run that finished before reaching them (no kill).
    missed: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        del out["kills"]
        out["crashes_survived"] = len(self.kills)
        out["pages_lost_per_crash"] = round(self.pages_lost_to_crashes / max(1, len(self.kills)), 3)
        return out


class LogTail:
    """Follows a run's JSON log while it is written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._buf = b""
        self._pos = 0
        self.events: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(self._pos)
            chunk = f.read()
        self._pos += len(chunk)
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        new = []
        for line in lines:
            if line.strip():
                new.append(json.loads(line))
        self.events += new
        return new


def leaves_in_flight(events: list[dict[str, Any]]) -> int:
    """Leaves a run had submitted and not yet finished, split, parked or put back."""
    live: set[str] = set()
    for e in events:
        leaf = e.get("leaf")
        if leaf is None:
            continue
        if e["event"] == "shard_submitted":
            live.add(leaf)
        elif e["event"] in ("shard_done", "shard_split", "shard_parked", "shard_retry_later"):
            live.discard(leaf)
    return len(live)


class Chaos:
    def __init__(
        self, work: Path, seed: int, kills: int, *, say: Any = print, source: str = "research-api"
    ) -> None:
        self.work = work
        self.source = source
        self.rng = random.Random(seed)
        self.report = Report(seed=seed, kills_asked=kills)
        self.say = say
        self.logs: list[Path] = []
        self._deck: list[str] = []
        self._missed_in_a_row: Counter[str] = Counter()

    @property
    def limit_line(self) -> str:
        return "limit = 100000\n" if self.source == "rqs" else ""

    def next_moment(self) -> str:
        """Moments are dealt from a shuffled deck: every kind comes up, in a seeded order."""
        if not self._deck:
            self._deck = list(MOMENTS)
            self.rng.shuffle(self._deck)
        return self._deck.pop()

    def missed(self, moment: str) -> None:
        """The run finished before `moment` came: deal it again to the next run."""
        self.report.missed[moment] = self.report.missed.get(moment, 0) + 1
        self._missed_in_a_row[moment] += 1
        if moment in REACHED and self._missed_in_a_row[moment] <= REDEALS:
            self._deck.append(moment)

    def run_once(self, config: Path, log: Path, *, kill: str | None) -> tuple[int, Kill | None]:
        """One `harvester run`; killed at `kill`'s moment if it comes. (exit code, the kill)."""
        self.logs.append(log)
        out = (log.parent / (log.stem + ".stderr")).open("w")
        started = time.monotonic()
        proc = subprocess.Popen(
            [*HARVESTER, "run", str(config), "--no-progress", "--log-file", str(log)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=ENV,
        )
        tail = LogTail(log)
        rng = self.rng
        deadline: float | None = None
        wanted, nth, delay = None, 1, 0.0
        latest: float | None = None
        if kill == "start-up":
            # A random instant of the start-up, but no later than the first window submitted:
            # a wall-clock instant alone misses a resumed run that is quicker than it.
            latest = started + rng.uniform(0.05, 1.8)
            wanted = "shard_submitted"
        elif kill == "page":
            wanted, nth, delay = "page_fetched", rng.randint(1, 4), rng.uniform(0.0, 0.03)
        elif kill == "checkpoint":
            wanted, nth = "page_fetched", rng.randint(1, 6)
        elif kill == "finalize":
            wanted, nth, delay = "shard_done", rng.randint(1, 3), rng.uniform(0.0, 0.015)
        elif kill == "landed":
            wanted, nth = "file_committed", rng.randint(1, 2)
        elif kill == "compaction":
            wanted = "compaction_swapped"
        seen = 0
        at_event = None
        try:
            while proc.poll() is None:
                if time.monotonic() - started > RUN_TIMEOUT:
                    raise AssertionError(f"harvester run took over {RUN_TIMEOUT:g} s ({log})")
                if wanted is not None and deadline is None:
                    for e in tail.poll():
                        if e.get("event") == wanted:
                            seen += 1
                            if seen >= nth:
                                at_event = f"{wanted} #{seen}"
                                deadline = time.monotonic() + delay
                                break
                if latest is not None and deadline is None and time.monotonic() >= latest:
                    deadline = latest
                if deadline is not None and time.monotonic() >= deadline:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    if proc.returncode != -signal.SIGKILL:
                        break  # it finished on its own just before
                    tail.poll()
                    k = Kill(
                        round=self.report.rounds,
                        run=self.report.runs,
                        moment=kill or "",
                        at_event=at_event,
                        seconds=round(time.monotonic() - started, 3),
                        leaves_in_flight=leaves_in_flight(tail.events),
                        rows_visible=0,
                    )
                    return proc.returncode, k
                time.sleep(0.001 if deadline is not None else 0.002)
            return proc.wait(), None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()

    def harvester(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*HARVESTER, *args], capture_output=True, text=True, env=ENV, timeout=120
        )

    def round(self, sim: Simulator, index: int, start: date, kills: int) -> None:
        """One study from nothing to complete, killed up to `kills` times on the way."""
        folder = self.work / f"round-{index:03d}"
        folder.mkdir(parents=True)
        end = start + timedelta(days=ROUND_DAYS - 1)
        config = folder / "study.toml"
        config.write_text(
            STUDY.format(
                round=index,
                source=self.source,
                limit=self.limit_line,
                start=start.isoformat(),
                end=end.isoformat(),
                regions=json.dumps(REGIONS),
                base_url=sim.url,
                concurrency=CONCURRENCY,
                big=BIG,
            )
        )
        done_kills = 0
        run = 0
        while True:
            run += 1
            self.report.runs += 1
            moment = self.next_moment() if done_kills < kills else None
            code, k = self.run_once(config, folder / f"run-{run:03d}.jsonl", kill=moment)
            if moment is not None and k is None:
                self.missed(moment)
            if k is not None:
                self._missed_in_a_row[k.moment] = 0
                k.rows_visible = check_readable(folder / "data")
                self.report.kills.append(k)
                self.report.moments[k.moment] = self.report.moments.get(k.moment, 0) + 1
                done_kills += 1
                continue
            if code != 0:
                tail = (folder / f"run-{run:03d}.stderr").read_text()[-2000:]
                raise AssertionError(f"round {index} run {run} exited {code}: {tail}")
            break
        self.finish_round(sim, folder, config, start, end)

    def finish_round(
        self, sim: Simulator, folder: Path, config: Path, start: date, end: date
    ) -> None:
        check_readable(folder / "data")
        verify = self.harvester("verify", str(config))
        if verify.returncode != 0:
            raise AssertionError(f"harvester verify failed: {verify.stdout}{verify.stderr}")
        got = dataset_ids(folder / "data")
        truth = oracle(sim, start, end)
        if not truth:
            raise AssertionError(f"{folder}: the oracle has no records for {start}..{end}")
        lost, extra = truth - set(got), set(got) - truth
        self.report.records += len(got)
        self.report.records_lost += len(lost)
        self.report.extra_records += len(extra) + (len(got) - len(set(got)))
        if lost or extra or len(got) != len(set(got)):
            raise AssertionError(
                f"{folder}: {len(lost)} records lost, {len(extra)} extra, "
                f"{len(got) - len(set(got))} duplicated"
            )

    def account(self, sim: Simulator) -> None:
        """Every 200 page answer is checkpointed by some run, or was lost to a crash."""
        stats = sim.get("/_sim/stats")
        faults: dict[str, int] = stats["faults"]
        answers = stats["responses"].get(PAGE_ENDPOINT[self.source], {})
        ok = int(answers.get("200", 0))
        events: Counter[str] = Counter()
        # A leaf taken up again must resume at its last checkpoint, never before it: pages a
        # run checkpointed are not fetched again by the next.
        cursors: dict[tuple[str, str], int] = {}
        for log in self.logs:
            if not log.exists():
                continue  # killed before its first event
            for line in log.read_bytes().splitlines():
                if not line.strip():
                    continue
                e = json.loads(line)
                events[e["event"]] += 1
                leaf = (log.parent.name, str(e.get("leaf")))
                if (
                    self.source == "rqs"
                    and e["event"] == "page_fetched"
                    and e.get("received") == 0
                    and e.get("has_more")
                ):
                    # An RQS task announcing its id before its results: no answer of a page.
                    # (A public-API page may be empty with more to come: a page all the same.)
                    events["task_announced"] += 1
                elif e["event"] == "page_fetched":
                    cursors[leaf] = int(e["cursor"])
                elif e["event"] == "shard_split":
                    cursors.pop(leaf, None)
                elif e["event"] == "shard_submitted":
                    resumed = int(e["resume_cursor"])
                    if resumed < cursors.get(leaf, 0):
                        raise AssertionError(
                            f"{log}: {leaf[1]} resumed at cursor {resumed}, before its "
                            f"checkpoint at {cursors[leaf]}"
                        )
                    self.report.leaves_resumed += resumed > 0
        # 200s that carried no page by design: cut bodies, answers the client had given up on,
        # and the second ask that confirms an empty first answer.
        not_pages = (
            faults.get("truncated_body", 0)
            + faults.get("slow_response", 0)
            + events["empty_result_confirm"]
        )
        r = self.report
        r.page_answers = ok
        pages = events["page_fetched"] - events["task_announced"]
        r.pages_checkpointed = pages
        r.pages_lost_to_crashes = max(0, ok - not_pages - pages)
        r.leaves_in_flight_at_kills = sum(k.leaves_in_flight for k in r.kills)
        r.requests = sum(int(n) for n in answers.values())
        r.faults = dict(sorted(faults.items()))

    def clean_baseline(self, starts: list[date]) -> None:
        """The same studies, crash-free, against a simulator without faults."""
        sim = Simulator(self.work / "clean", "clean", self.report.seed)
        try:
            for i, start in enumerate(starts):
                folder = self.work / "clean" / f"round-{i:03d}"
                folder.mkdir(parents=True)
                config = folder / "study.toml"
                config.write_text(
                    STUDY.format(
                        round=i,
                        source=self.source,
                        limit=self.limit_line,
                        start=start.isoformat(),
                        end=(start + timedelta(days=ROUND_DAYS - 1)).isoformat(),
                        regions=json.dumps(REGIONS),
                        base_url=sim.url,
                        concurrency=CONCURRENCY,
                        big=BIG,
                    )
                )
                done = self.harvester(
                    "run", str(config), "--no-progress", "--log-file", str(folder / "run.jsonl")
                )
                if done.returncode != 0:
                    raise AssertionError(f"clean run failed: {done.stderr[-2000:]}")
            answers = sim.get("/_sim/stats")["responses"].get(PAGE_ENDPOINT[self.source], {})
            self.report.clean_requests = sum(int(n) for n in answers.values())
            self.report.clean_page_answers = int(answers.get("200", 0))
        finally:
            sim.close()

    def run(self) -> Report:
        began = time.monotonic()
        sim = Simulator(self.work, "flaky", self.report.seed)
        starts: list[date] = []
        try:
            offset = self.rng.randrange(0, CORPUS_DAYS)
            while len(self.report.kills) < self.report.kills_asked:
                left = self.report.kills_asked - len(self.report.kills)
                # Rounds walk through the simulator's corpus and wrap around: each round is a
                # study of its own, so a period may come again without overlapping anything.
                days = (offset + ROUND_DAYS * len(starts)) % CORPUS_DAYS
                start = CORPUS_FIRST + timedelta(days=days)
                starts.append(start)
                self.round(sim, len(starts) - 1, start, min(left, self.rng.randint(5, 12)))
                self.report.rounds += 1
                self.say(
                    f"round {self.report.rounds}: {len(self.report.kills)} kills so far, "
                    f"{self.report.records:,} records, none lost"
                )
            self.account(sim)
        finally:
            sim.close()
        self.clean_baseline(starts)
        self.report.seconds = round(time.monotonic() - began, 1)
        r = self.report
        if r.pages_lost_to_crashes > r.leaves_in_flight_at_kills:
            raise AssertionError(
                f"crashes lost {r.pages_lost_to_crashes} pages, more than the "
                f"{r.leaves_in_flight_at_kills} leaves in flight at the kills"
            )
        return r


def oracle(sim: Simulator, start: date, end: date) -> set[int]:
    groups = [
        {
            "operator": "and",
            "conditions": [{"field": "region_code", "operator": "in", "field_values": REGIONS}],
        }
    ]
    lo = int(datetime.combine(start, datetime.min.time(), UTC).timestamp())
    hi = int(datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC).timestamp())
    answer = sim.post("/_sim/oracle", {"condition_groups": groups, "start": lo, "end": hi})
    return {int(i) for i in answer["ids"]}


def run_chaos(
    kills: int,
    seed: int,
    work: Path | None = None,
    *,
    say: Any = print,
    source: str = "research-api",
) -> Report:
    """Kill `kills` runs; raise AssertionError at the first broken guarantee."""
    say(f"chaos seed: {seed} (rerun with --seed {seed} --source {source})")
    if work is not None:
        return Chaos(work, seed, kills, say=say, source=source).run()
    folder = Path(tempfile.mkdtemp(prefix="harvester-chaos-"))
    try:
        report = Chaos(folder, seed, kills, say=say, source=source).run()
    except BaseException:
        say(f"chaos: work kept in {folder}")
        raise
    shutil.rmtree(folder, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs to survive (default 20)")
    parser.add_argument("--seed", type=int, default=None, help="default: a random seed, printed")
    parser.add_argument("--work", type=Path, default=None, help="keep the work in this folder")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    parser.add_argument(
        "--source", choices=SOURCES, default="research-api", help="the API the studies use"
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    report = run_chaos(args.kills, seed, args.work, source=args.source)
    summary = report.summary()
    print(json.dumps(summary, indent=2))
    if args.json is not None:
        args.json.write_text(
            json.dumps({**summary, "kills": [asdict(k) for k in report.kills]}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
