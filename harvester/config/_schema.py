"""The study file's shape as pydantic tables, and pydantic's errors as one-line problems.

Strict types and `extra="forbid"` everywhere: a TOML typo must be an error, never a default.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_BASE_URL = "https://open.tiktokapis.com"


class Problem(Exception):
    """One problem at one key; the loader turns it into a ConfigError line."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        super().__init__(key)
        self.key, self.problem, self.fix = key, problem, fix


# --------------------------------------------------------------------------- the TOML shape

Positive = Annotated[int, Field(ge=1)]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class StudyTable(_Table):
    name: str
    source: Literal["research-api", "rqs", "pyrqs"]
    category: Literal["video"] = "video"
    fields: list[str] | None = None
    start_date: Any = Field(json_schema_extra={"required": True})
    end_date: Any = Field(json_schema_extra={"required": True})
    window: str = "7d"
    #: Days after a window's end its counts keep changing (TikTok: up to 10); 0 turns refreshes off.
    settle_days: Annotated[int, Field(ge=0, le=365)] = 10
    limit: int | None = None
    stage: Literal["test", "execution"] = "execution"
    expected_records_per_day: Annotated[float, Field(ge=0)] | None = None
    #: Harvest even when nothing positive can be sent to the public API (every video of the
    #: study's dates is fetched and filtered locally); refused by default.
    allow_full_scan: bool = False
    condition_groups: list[Any] | None = None
    query: dict[str, Any] | None = None


class ApiTable(_Table):
    base_url: str | None = None
    client_key_env: str = "TIKTOK_CLIENT_KEY"
    client_secret_env: str = "TIKTOK_CLIENT_SECRET"
    max_concurrency: Annotated[int, Field(ge=1, le=1000)] = 5
    requests_per_second: Annotated[float, Field(gt=0, le=10_000)] = 5.0
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 8
    retry_wait_s: Annotated[float, Field(gt=0, le=600)] = 1.0
    retry_wait_max_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    search_id_wait_s: Annotated[float, Field(ge=0, le=3600)] = 60.0
    end_date_inclusive: bool = True
    verify_tls: bool = True
    #: Extra CA certificates (PEM) to trust, e.g. an institution's TLS-inspecting proxy.
    ca_bundle: str | None = None


class _QuotaTable(_Table):
    daily_requests: Positive = 1000
    daily_records: Positive | None = None  # by stage: see _quota.QUOTA_RECORDS
    on_exhausted: Literal["wait", "exit"] = "wait"
    pool: str | None = None
    share: Annotated[float, Field(gt=0, le=1)] | None = None
    window_fraction: Annotated[float, Field(gt=0, le=1)] = 0.5


class _OutputTable(_Table):
    path: str
    partition_by: list[str] = ["create_date"]
    #: Keep every row a refresh supersedes, in a dataset beside this one.
    history: bool = False


class _StateTable(_Table):
    path: str | None = None
    url: str | None = None
    lease_s: Annotated[float, Field(gt=0, le=3600)] = 60.0


class EnrichTable(_Table):
    """One `[[enrich]]` block: a kind of data fetched about the harvested videos."""

    kind: Literal[
        "comments", "users", "followers", "following", "liked_videos", "pinned_videos",
        "reposted_videos", "playlists",
    ]  # fmt: skip
    where: str | None = None
    max_per_target: Positive | None = None
    replies: bool = False
    path: str | None = None


class StudyFile(_Table):
    study: StudyTable
    api: ApiTable = ApiTable()
    quota: _QuotaTable = _QuotaTable()
    output: _OutputTable
    state: _StateTable = _StateTable()
    enrich: list[EnrichTable] = []


_TABLES: Mapping[str, type[_Table]] = {
    "study": StudyTable,
    "api": ApiTable,
    "quota": _QuotaTable,
    "output": _OutputTable,
    "state": _StateTable,
    "enrich": EnrichTable,
}

# An example line per key: the fix for a missing key or a wrong type.
EXAMPLES: Mapping[str, str] = {
    "study": "[study] with name, source, start_date, end_date and a query",
    "output": '[output] with path = "data/my-study"',
    "study.name": 'name = "nl-election"',
    "study.source": 'source = "research-api" (or "rqs", "pyrqs")',
    "study.fields": 'fields = ["id", "create_time", "username"]',
    "study.start_date": 'start_date = "2023-01-01"',
    "study.end_date": 'end_date = "2023-12-31"',
    "study.window": 'window = "7d"',
    "study.settle_days": "settle_days = 10",
    "study.limit": "limit = 1000",
    "study.expected_records_per_day": "expected_records_per_day = 500",
    "study.allow_full_scan": "allow_full_scan = true",
    "study.condition_groups": 'condition_groups = [{operator = "and", conditions = [...]}]',
    "study.query": 'query = {and = [{operation = "EQ", field_name = "region_code", ...}]}',
    "api.base_url": f'base_url = "{DEFAULT_BASE_URL}"',
    "api.client_key_env": 'client_key_env = "TIKTOK_CLIENT_KEY"',
    "api.client_secret_env": 'client_secret_env = "TIKTOK_CLIENT_SECRET"',
    "api.max_concurrency": "max_concurrency = 5",
    "api.requests_per_second": "requests_per_second = 5",
    "api.timeout_s": "timeout_s = 60",
    "api.max_attempts": "max_attempts = 8",
    "api.retry_wait_s": "retry_wait_s = 1",
    "api.retry_wait_max_s": "retry_wait_max_s = 60",
    "api.search_id_wait_s": "search_id_wait_s = 60",
    "api.ca_bundle": 'ca_bundle = "/etc/ssl/certs/our-proxy-ca.pem"',
    "quota.daily_requests": "daily_requests = 1000",
    "quota.daily_records": "daily_records = 100000",
    "quota.window_fraction": "window_fraction = 0.5",
    "output.path": 'path = "data/nl-election"',
    "output.partition_by": 'partition_by = ["create_date"]',
    "quota.pool": 'pool = "our-lab"',
    "quota.share": "share = 0.5",
    "state.path": 'path = "data/nl-election.state.sqlite"',
    "state.url": 'url = "postgresql://harvester@db.example.org:5432/lab"',
    "state.lease_s": "lease_s = 60",
    "enrich.kind": 'kind = "comments"',
    "enrich.where": 'where = "comment_count >= 5"',
    "enrich.max_per_target": "max_per_target = 1000",
    "enrich.replies": "replies = true",
    "enrich.path": 'path = "data/nl-election.comments"',
}


# --------------------------------------------------------------------------- shape problems


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def shown(value: object) -> str:
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, dict):
        text = "{...}"
    elif isinstance(value, list):
        text = "[...]"
    else:
        text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(value: object) -> str:
    kinds: list[tuple[type, str]] = [
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a decimal number"),
        (str, "a string"),
        (list, "an array"),
        (dict, "a table"),
        (datetime, "a date-time"),
        (date, "a date"),
    ]
    return next((name for t, name in kinds if isinstance(value, t)), type(value).__name__)


_WANTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "list_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
}


def pydantic_problem(error: ValidationError) -> Problem:
    e = error.errors(include_url=False)[0]
    loc = tuple(e["loc"])
    key = _key_path(loc)
    kind, value, ctx = e["type"], e.get("input"), e.get("ctx", {})
    example = EXAMPLES.get(key) or EXAMPLES.get(
        _key_path(tuple(p for p in loc if isinstance(p, str)))
    )
    if kind == "missing":
        if len(loc) == 1:
            return Problem(f"[{key}]", "table is missing", f"add a table {example}")
        return Problem(key, "required key is missing", f"add {example} to [{loc[0]}]")
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind == "literal_error":
        return Problem(key, f"{shown(value)} is not allowed", f"use {ctx.get('expected')}")
    if kind in _WANTED:
        fix = f"write it like {example}" if example else f"give {_WANTED[kind]}"
        return Problem(key, f"expected {_WANTED[kind]}, got {shown(value)} ({_kind(value)})", fix)
    bounds = {
        "greater_than_equal": ("is too small", "at least {ge}"),
        "greater_than": ("is too small", "more than {gt}"),
        "less_than_equal": ("is too large", "at most {le}"),
        "less_than": ("is too large", "less than {lt}"),
    }
    if kind in bounds:
        problem, limit = bounds[kind]
        return Problem(
            key,
            f"{shown(value)} {problem}",
            "use a number " + limit.format(**{k: f"{v:g}" for k, v in ctx.items()}),
        )
    return Problem(key, f"{e['msg']} (got {shown(value)})", f"write it like {example}")


def _unknown_key(loc: tuple[int | str, ...]) -> Problem:
    name = str(loc[-1])
    if len(loc) == 1:
        close = difflib.get_close_matches(name, list(_TABLES), n=1, cutoff=0.6)
        fix = f"did you mean [{close[0]}]?" if close else "known tables: " + ", ".join(_TABLES)
        return Problem(f"[{name}]", "unknown table", fix)
    table = str(loc[0])
    known = list(_TABLES[table].model_fields)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    elsewhere = [t for t, m in _TABLES.items() if t != table and name in m.model_fields]
    if elsewhere and not close:
        return Problem(_key_path(loc), f"belongs in [{elsewhere[0]}]", "move it there")
    fix = (
        f'did you mean "{close[0]}"?' if close else f"known keys in [{table}]: " + ", ".join(known)
    )
    return Problem(_key_path(loc), "unknown key", fix)
