"""`harvest` and `run_study`: a run with logging set up and errors made one line."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import anyio
import structlog

from harvester._arrow import use_lean_memory_pool
from harvester._exceptions import HarvesterError
from harvester._exit import EXIT_OK, EXIT_QUOTA, EXIT_SIGNAL
from harvester.config import Credentials, Study
from harvester.logs import configure_logging, register_secret
from harvester.orchestrator._reports import check_full_scan, day_report, status_report
from harvester.orchestrator._run import Harvest, RunOptions

__all__ = ["default_log_file", "harvest", "run_study"]

log = structlog.get_logger("harvester")


def default_log_file(study: Study) -> Path:
    """One JSON log per run, beside the state: `<state>.logs/run-<UTC time>.jsonl`."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if study.state_url is not None:
        stamp += f"-{os.getpid()}"  # workers of one study may start in the same second
    return study.state_path.with_name(study.state_path.name + ".logs") / f"run-{stamp}.jsonl"


async def harvest(
    study: Study,
    credentials: Credentials,
    options: RunOptions | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> int:
    """Run `study` until complete or stopped; returns the exit code (0, 75, 130, 143)."""
    register_secret(credentials.client_secret)
    check_full_scan(study)
    h = Harvest(study, credentials, options or RunOptions(), clock=clock)
    try:
        return await h.run()
    finally:
        h.state.close()


def _first_harvester_error(exc: BaseException) -> HarvesterError | None:
    if isinstance(exc, HarvesterError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_harvester_error(inner)
            if found is not None:
                return found
    return None


def run_study(study: Study, credentials: Credentials, options: RunOptions) -> int:
    """The CLI's `run`: logging set up, warnings shown, errors as one line (raised)."""
    check_full_scan(study)  # before the log file and the warnings: a refusal is one line
    log_file = options.log_file or default_log_file(study)
    configure_logging(log_file)
    use_lean_memory_pool()
    for warning in study.warnings:
        print(f"harvester: warning: {warning}", file=sys.stderr)
    started = time.monotonic()
    try:
        code = anyio.run(harvest, study, credentials, options)
    except BaseExceptionGroup as group:
        found = _first_harvester_error(group)
        if found is None:
            log.exception("run_failed")
            raise HarvesterError(
                f"unexpected error: {group.exceptions[0]!r} (details in {log_file})"
            ) from None
        raise found from None
    except KeyboardInterrupt:
        return EXIT_SIGNAL[signal.SIGINT]
    print(f"harvester: {_summary(study, code, time.monotonic() - started)}", file=sys.stderr)
    return code


def _summary(study: Study, code: int, seconds: float) -> str:
    """One line a scheduler's log keeps: where the study stands after this run."""
    s = status_report(study)
    outcome = {EXIT_OK: "complete", EXIT_QUOTA: "stopped: daily quota spent"}.get(code, "stopped")
    filtered = (
        f"; the exact filter dropped {s['dropped_by_exact_filter']:,} returned records"
        if study.source == "research-api"
        else ""
    )
    line = (
        f"{study.name} {outcome} after {seconds:.1f} s: {s['committed_plan_shards']}/"
        f"{s['plan_shards']} shards committed, {s['dataset_rows']:,} rows in {s['files']:,} "
        f"files; quota today {s['requests_today']:,} requests, {s['records_today']:,} records"
        + filtered
    )
    if code == EXIT_QUOTA:
        d = day_report(study)
        line += (
            f"; today {d['committed_today']:,} shard(s) committed, {d['in_flight']:,} window(s) "
            f"in flight ({d['in_flight_pages']:,} pages staged, resumed or refetched tomorrow)"
        )
    return line
