"""Studies for the reliability tests: small corpora, quick retries, every knob in one place."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import tomli_w

from harvester.api import PollPolicy, RetryPolicy
from harvester.config import Credentials, Study, loads_study
from harvester.orchestrator import RunOptions
from harvester.simulator.app import Simulator

CREDS = Credentials("sim-client-key", "sim-client-secret")
REGIONS = ("NL", "BE", "DE", "US", "GB")
START = date(2022, 3, 1)
#: Small corpora, no short-term limit: what is tested is the faults switched on.
SIM: dict[str, Any] = {"seed": 21, "videos_per_day": 200, "rate_limit_per_minute": 10**6}
FAST_TASKS: dict[str, Any] = {"rqs_created": 0.0, "rqs_validating": 0.01, "rqs_processing": 0.02}
POLL = PollPolicy(initial=0.01, maximum=0.05, timeout=30.0, busy_timeout=30.0)


def groups(regions: Sequence[str] = REGIONS) -> list[dict[str, Any]]:
    return [
        {
            "operator": "and",
            "conditions": [
                {"field": "region_code", "operator": "in", "field_values": list(regions)}
            ],
        }
    ]


def study_text(
    base_url: str,
    *,
    name: str = "storm",
    source: str = "research-api",
    start: date = START,
    days: int = 8,
    window: int = 2,
    timeout_s: float = 5.0,
    max_attempts: int = 8,
    partition_by: Sequence[str] = ("create_date",),
    fields: Sequence[str] | None = None,
    regions: Sequence[str] = REGIONS,
    output: str = "data",
    **extra: Mapping[str, Any],
) -> str:
    study: dict[str, Any] = {
        "name": name,
        "source": source,
        "start_date": start.isoformat(),
        "end_date": (start + timedelta(days=days - 1)).isoformat(),
        "window": f"{window}d",
        "condition_groups": groups(regions),
    }
    if fields is not None:
        study["fields"] = list(fields)
    tables: dict[str, dict[str, Any]] = {
        "study": study,
        "api": {
            "base_url": base_url,
            "max_concurrency": 3,
            "requests_per_second": 1000,
            "timeout_s": timeout_s,
            "max_attempts": max_attempts,
            "retry_wait_s": 0.01,
            "retry_wait_max_s": 0.05,
        },
        "quota": {"daily_requests": 10**7, "daily_records": 10**9},
        "output": {"path": output, "partition_by": list(partition_by)},
    }
    for table, values in extra.items():
        tables.setdefault(table, {}).update(values)
    return tomli_w.dumps(tables)


def write_study(folder: Path, text: str) -> tuple[Path, Study]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.toml"
    path.write_text(text)
    return path, loads_study(text, path)


def options(attempts: int = 8, **kw: Any) -> RunOptions:
    kw.setdefault("retry_delay", 0.02)
    kw.setdefault("poll", POLL)
    kw.setdefault("retry", RetryPolicy(attempts=attempts, wait_initial=0.5, wait_scale=1e-3))
    return RunOptions(**kw)


def epoch(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def oracle(sim: Simulator, study: Study) -> set[int]:
    """The ids truly matching the study's own condition_groups over its whole period."""
    doc = tomllib.loads(study.config_path.read_text())
    return sim.oracle(
        doc["study"]["condition_groups"],
        epoch(study.start_date),
        epoch(study.end_date + timedelta(days=1)),
    )


def dataset_ids(root: Path) -> list[int]:
    if not any(root.rglob("*.parquet")):
        return []
    con = duckdb.connect()
    try:
        rows = con.execute(
            "SELECT id FROM read_parquet(?, hive_partitioning = true)",
            [str(root / "**" / "*.parquet")],
        ).fetchall()
    finally:
        con.close()
    return [int(r[0]) for r in rows]
