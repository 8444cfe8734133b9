"""Loading: read the file, check the shape, then the meaning; resolve defaults and paths."""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import tomllib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import ValidationError

from harvester._exceptions import ConfigError, QueryError
from harvester.config._schema import (
    DEFAULT_BASE_URL,
    EXAMPLES,
    ApiTable,
    Problem,
    StudyFile,
    StudyTable,
    pydantic_problem,
    shown,
)
from harvester.config._study import ApiSettings, Enrichment, QuotaSettings, Study
from harvester.fields import DEFAULT_FIELDS, REQUIRED_FIELDS, partition_problem
from harvester.plan.windows import parse_window
from harvester.query import (
    MAX_REST_WINDOW_DAYS,
    STAGE_LIMITS,
    RestQuery,
    SeedQuery,
    Translation,
    check_region_codes,
    parse_rest_query,
    parse_seed_query,
    translate_rest,
    translate_to_rest,
    validate_fields,
    validate_limit,
)

#: Default daily record quota: the seed caps the RQS Test Stage at 5,000 records a day.
QUOTA_RECORDS = {"test": 5_000, "execution": 100_000}
_FIRST_DATE = date(2016, 1, 1)
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: `today`, `yesterday`, `today-3d` (UTC): resolved at every run.
_RELATIVE_RE = re.compile(r"\s*(today|yesterday)\s*(?:-\s*([0-9]{1,5})\s*d)?\s*")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def load_study(path: str | os.PathLike[str], *, today: date | None = None) -> Study:
    """Read and validate the study file at `path`; ConfigError (one line) on any problem.

    Relative dates (`"today-2d"`) resolve against `today` (the current UTC date when None)."""
    label = os.fspath(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{label}: no such file; check the path to the study file") from None
    except IsADirectoryError:
        raise ConfigError(f"{label}: is a folder; give the path to a .toml study file") from None
    except OSError as e:
        raise ConfigError(
            f"{label}: cannot read the study file ({e.strerror}); check its permissions"
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{label}: byte {e.start} is not UTF-8; save the study file as UTF-8 text"
        ) from None
    return loads_study(text, Path(path).absolute(), label=label, today=today)


def utc_today() -> date:
    return datetime.now(UTC).date()


def loads_study(
    text: str, path: Path, *, label: str | None = None, today: date | None = None
) -> Study:
    """Validate study TOML `text` as if read from `path` (relative paths resolve beside it)."""
    label = label if label is not None else path.name
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        where = re.search(r"\(at (line \d+, column \d+|end of document)\)$", msg)
        detail = msg[: where.start()].strip() if where else msg
        at = where[1] if where else "TOML"
        raise ConfigError(f"{label}: {at}: {detail}; fix the TOML syntax there") from None
    try:
        try:
            model = StudyFile.model_validate(doc)
        except ValidationError as e:
            raise pydantic_problem(e) from None
        return _resolve(model, Path(path).absolute(), today or utc_today())
    except Problem as p:
        raise ConfigError(f"{label}: {p.key}: {p.problem}; {p.fix}") from None


# --------------------------------------------------------------------------- meaning problems


def _relative(key: str, value: object, today: date) -> tuple[date, str] | None:
    """A relative date and its normalised rule, or None for anything else."""
    if not isinstance(value, str):
        return None
    m = _RELATIVE_RE.fullmatch(value.lower())
    if m is None:
        if value.strip().lower().startswith(("today", "yesterday")):
            raise Problem(
                key,
                f"{shown(value)} is not a relative date",
                'write "today", "yesterday" or "today-7d" (days before today, UTC)',
            )
        return None
    back = (1 if m[1] == "yesterday" else 0) + int(m[2] or 0)
    rule = "today" if back == 0 else f"today-{back}d"
    return today - timedelta(days=back), rule


def _date(key: str, value: object) -> date:
    if isinstance(value, datetime):
        raise Problem(key, f"{value} has a time of day", "give a date only, like 2023-01-01")
    if isinstance(value, date):
        parsed = value
    elif isinstance(value, str) and _DATE_RE.fullmatch(value):
        try:
            parsed = date.fromisoformat(value)
        except ValueError:
            problem = f"{shown(value)} is not a calendar date"
            raise Problem(key, problem, "fix the day or month") from None
    else:
        raise Problem(
            key,
            f"{shown(value)} is not a date",
            'write it as "YYYY-MM-DD", or relative: "today", "yesterday", "today-7d"',
        )
    if parsed < _FIRST_DATE:
        raise Problem(key, f"{parsed} is before TikTok existed", "use a date from 2016 on")
    return parsed


_QUERY_PATH_RE = re.compile(r"(condition_groups|query)((?:\[\d+\]|\.\w+)*)(?::\s+|\s+)")


def _query_problem(key: str, error: QueryError) -> Problem:
    """Fold the query's own location (`condition_groups[0].conditions[1]`) into the key."""
    text = str(error)
    if (m := _QUERY_PATH_RE.match(text)) and key.endswith("." + m[1]):
        key, text = key + m[2], text[m.end() :]
    problem, sep, fix = text.partition("; ")
    return Problem(key, problem, fix if sep else "fix the query")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: Why `rqs` has no default endpoint: TikTok serves the Research Query Service only inside its
#: Virtual Compute Environment, through the pyrqs SDK; the HTTP binding is this project's own.
RQS_ENDPOINT_HINT = (
    "the RQS HTTP binding is served by `harvester simulate` or by a gateway in front of the "
    'pyrqs SDK, not by TikTok (inside TikTok\'s VCE use source = "pyrqs")'
)


def _base_url(api: ApiTable, source: str) -> str:
    if api.base_url is None and source == "rqs":
        raise Problem(
            "api.base_url",
            'is required for source "rqs"',
            f'give the binding\'s address, like base_url = "http://127.0.0.1:8765": '
            f"{RQS_ENDPOINT_HINT}",
        )
    url = api.base_url if api.base_url is not None else DEFAULT_BASE_URL
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise Problem("api.base_url", f"{shown(url)} is not a base URL", f"use {DEFAULT_BASE_URL}")
    loopback = _is_loopback(parts.hostname)
    if parts.scheme == "http" and not loopback:
        raise Problem("api.base_url", "plain http sends credentials in clear", "use https://")
    if not api.verify_tls and not loopback:
        raise Problem(
            "api.verify_tls",
            f"may be false only for a loopback host, not {parts.hostname}",
            "remove verify_tls = false",
        )
    return url.rstrip("/")


def _ca_bundle(base: Path, value: str | None) -> Path | None:
    if value is None:
        return None
    path = _path(base, "api.ca_bundle", value)
    if not path.is_file():
        raise Problem(
            "api.ca_bundle", f"{path} is not a file", "give a PEM file of CA certificates"
        )
    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError):
        raise Problem(
            "api.ca_bundle", f"{path} holds no CA certificate", "give a PEM file of CA certificates"
        ) from None
    return path


def _env_name(key: str, value: str) -> str:
    if not _ENV_RE.fullmatch(value):
        raise Problem(
            key,
            f"{shown(value)} is not an environment variable name",
            "give the variable's NAME (not the secret itself), like TIKTOK_CLIENT_KEY",
        )
    return value


def _path(base: Path, key: str, value: str) -> Path:
    if not value.strip():
        raise Problem(key, "is empty", f"write it like {EXAMPLES[key]}")
    p = Path(value).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def _creatable(key: str, path: Path, *, folder: bool) -> None:
    """Cheap check that `path` can be written or created; creates nothing."""
    if path.exists():
        if folder != path.is_dir():
            want = "a folder" if folder else "a file"
            raise Problem(key, f"{path} exists and is not {want}", "choose another path")
        if not os.access(path, os.W_OK | (os.X_OK if folder else 0)):
            raise Problem(key, f"{path} is not writable", "fix its permissions or move it")
        if not folder:
            _creatable(key, path.parent, folder=True)
        return
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise Problem(key, f"cannot create {path}: {ancestor} is a file", "choose another path")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise Problem(
            key, f"cannot create {path}: {ancestor} is not writable", "choose a writable folder"
        )


def _partitions(values: list[str], fields: tuple[str, ...]) -> tuple[str, ...]:
    for i, name in enumerate(values):
        key = f"output.partition_by[{i}]"
        if name in values[:i]:
            raise Problem(key, f"{shown(name)} is repeated", "list each partition once")
        if (problem := partition_problem(name, fields)) is not None:
            raise Problem(key, *problem)
    return tuple(values)


#: The video field each kind's targets are read from.
_TARGET_FIELD = {"comments": "id", "playlists": "playlist_id"}


def _enrichments(
    model: StudyFile, base: Path, output: Path, state: Path, fields: tuple[str, ...]
) -> tuple[Enrichment, ...]:
    out: list[Enrichment] = []
    seen: dict[Path, int] = {}
    for i, e in enumerate(model.enrich):
        key = f"enrich[{i}]"
        if model.state.url is not None:
            raise Problem(
                f"{key}.kind",
                "enrichments keep their progress in a SQLite file beside the study, not yet in "
                "PostgreSQL",
                "remove [state] url for a study with [[enrich]] blocks, or enrich in a study "
                "of its own",
            )
        if model.study.source == "pyrqs":
            raise Problem(
                f"{key}.kind",
                "enrichments go through the public Research API, which a pyrqs study has no "
                "base URL for",
                'use source = "research-api" or "rqs" for a study with [[enrich]] blocks',
            )
        needed = _TARGET_FIELD.get(e.kind, "username")
        if needed not in fields:
            raise Problem(
                f"{key}.kind",
                f"{e.kind} needs the videos' {needed}",
                f"add {needed!r} to study.fields",
            )
        if e.replies and e.kind != "comments":
            raise Problem(f"{key}.replies", "applies to comments only", "remove it")
        if e.where is not None and not e.where.strip():
            raise Problem(
                f"{key}.where", "is empty", "remove it or write SQL like comment_count >= 5"
            )
        path = (
            _path(base, f"{key}.path", e.path)
            if e.path is not None
            else output.with_name(f"{output.name}.{e.kind}")
        )
        if path == output or path.is_relative_to(output) or output.is_relative_to(path):
            raise Problem(
                f"{key}.path", f"{path} overlaps output.path", "give each dataset its own folder"
            )
        if state.is_relative_to(path):
            raise Problem(f"{key}.path", f"{path} holds the state", "choose another folder")
        if path in seen:
            raise Problem(
                f"{key}.path",
                f"{path} is also enrich[{seen[path]}]'s dataset",
                "give each enrichment its own path",
            )
        seen[path] = i
        _creatable(f"{key}.path", path, folder=True)
        out.append(Enrichment(e.kind, e.where, e.max_per_target, e.replies, path))
    return tuple(out)


def _resolve(model: StudyFile, config_path: Path, today: date) -> Study:
    """The study the file describes, checked in the order a reader of the file meets it: the
    first problem found is the one reported."""
    s = model.study
    _check_name(s.name)
    start, end, window_days, rules = _period(s, today)
    fields = _fields(s)
    limit = _limit(model)
    stage = "execution" if s.source == "research-api" else s.stage
    seed, rest, translation, warnings = _queries(s)
    output, state, state_url = _places(model, config_path)
    enrichments = _enrichments(model, config_path.parent, output, state, fields)
    if not model.api.verify_tls:
        warnings += ("api.verify_tls = false: server certificates are not checked (loopback only)",)
    return Study(
        name=s.name,
        source=s.source,
        category=s.category,
        fields=fields,
        start_date=start,
        end_date=end,
        window_days=window_days,
        stage=s.stage,
        limit=limit,
        expected_records_per_day=s.expected_records_per_day,
        allow_full_scan=s.allow_full_scan,
        seed_query=seed,
        rest_query=rest,
        translation=translation,
        api=_api_settings(model.api, s.source, config_path.parent),
        quota=QuotaSettings(
            daily_requests=model.quota.daily_requests,
            daily_records=model.quota.daily_records or QUOTA_RECORDS[stage],
            on_exhausted=model.quota.on_exhausted,
            pool=model.quota.pool,
            share=model.quota.share,
            window_fraction=model.quota.window_fraction,
        ),
        output_path=output,
        partition_by=_partitions(model.output.partition_by, fields),
        state_path=state,
        config_path=config_path,
        enrichments=enrichments,
        start_rule=rules[0],
        end_rule=rules[1],
        settle_days=s.settle_days,
        history_path=output.with_name(f"{output.name}.history") if model.output.history else None,
        warnings=warnings,
        state_url=state_url,
        lease_s=model.state.lease_s,
    )


def _check_name(name: str) -> None:
    if not _NAME_RE.fullmatch(name):
        raise Problem(
            "study.name",
            f"{shown(name)} cannot name files",
            "use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )


def _period(s: StudyTable, today: date) -> tuple[date, date, int, tuple[str | None, str | None]]:
    """(start_date, end_date, window length in days, the dates' rules when relative)."""
    rel_start = _relative("study.start_date", s.start_date, today)
    rel_end = _relative("study.end_date", s.end_date, today)
    start = rel_start[0] if rel_start else _date("study.start_date", s.start_date)
    end = rel_end[0] if rel_end else _date("study.end_date", s.end_date)
    if end < start:
        raise Problem("study.end_date", f"{end} is before start_date {start}", "swap the dates")
    most = MAX_REST_WINDOW_DAYS if s.source == "research-api" else 3660
    try:
        window_days = parse_window(s.window)
        if window_days > most:
            raise ValueError
    except ValueError:
        raise Problem(
            "study.window",
            f"{shown(s.window)} is not a window",
            f'use a whole number of days from 1 to {most} like "7d"',
        ) from None
    rules = (rel_start[1] if rel_start else None, rel_end[1] if rel_end else None)
    return start, end, window_days, rules


def _fields(s: StudyTable) -> tuple[str, ...]:
    """The fields to fetch, the required ones first when the study leaves them out."""
    try:
        fields = validate_fields(DEFAULT_FIELDS if s.fields is None else s.fields, s.source)
    except QueryError as e:
        raise _query_problem("study.fields", e) from None
    return tuple(f for f in REQUIRED_FIELDS if f not in fields) + fields


def _limit(model: StudyFile) -> int | None:
    """The per-task record limit of an RQS study (None for the public API)."""
    s = model.study
    limit: int | None = None
    test_stage = s.stage == "test" and s.source != "research-api"
    if s.source == "research-api":
        if s.limit is not None:
            raise Problem(
                "study.limit", "applies only to RQS tasks", "remove it for source research-api"
            )
    else:
        try:
            # Test stage: unset means "no cap of the study's own": the day's record budget,
            # spread over the windows, sets each task's limit (plan/sample.py).
            given = STAGE_LIMITS["test"][1] if test_stage and s.limit is None else s.limit
            limit = validate_limit(given, s.stage)
        except QueryError as e:
            raise _query_problem("study.limit", e) from None
    day_cap = QUOTA_RECORDS["test"]
    if test_stage and model.quota.daily_records is not None and model.quota.daily_records > day_cap:
        raise Problem(
            "quota.daily_records",
            f"{model.quota.daily_records:,} is more than the test stage's {day_cap:,} a day",
            f"use at most {day_cap}",
        )
    return limit


def _places(model: StudyFile, config_path: Path) -> tuple[Path, Path, str | None]:
    """(output folder, state file, state URL): where the study's data and memory live."""
    base = config_path.parent
    output = _path(base, "output.path", model.output.path)
    state_key = "state.path"
    state = (
        _path(base, state_key, model.state.path)
        if model.state.path is not None
        else output.parent / f"{model.study.name}.state.sqlite"
    )
    if config_path.is_relative_to(output):
        raise Problem("output.path", f"{output} holds the study file", "use a folder of its own")
    if state.is_relative_to(output):
        raise Problem(state_key, f"{state} is inside output.path", "keep state beside the data")
    _creatable("output.path", output, folder=True)
    _creatable(state_key, state, folder=False)
    state_url = _state_url(model.state.url, model.state.path)
    if model.quota.pool is not None and state_url is None:
        raise Problem(
            "quota.pool",
            "a pool is shared through PostgreSQL",
            'set [state] url = "postgresql://user@host:5432/db" or remove pool',
        )
    if model.quota.share is not None and model.quota.pool is None:
        raise Problem("quota.share", "is a share of a pool", 'name the pool: pool = "our-lab"')
    return output, state, state_url


def _api_settings(api: ApiTable, source: str, base: Path) -> ApiSettings:
    return ApiSettings(
        base_url=_base_url(api, source),
        client_key_env=_env_name("api.client_key_env", api.client_key_env),
        client_secret_env=_env_name("api.client_secret_env", api.client_secret_env),
        max_concurrency=api.max_concurrency,
        requests_per_second=api.requests_per_second,
        timeout_s=api.timeout_s,
        max_attempts=api.max_attempts,
        end_date_inclusive=api.end_date_inclusive,
        verify_tls=api.verify_tls,
        ca_bundle=_ca_bundle(base, api.ca_bundle),
        retry_wait_s=api.retry_wait_s,
        retry_wait_max_s=max(api.retry_wait_s, api.retry_wait_max_s),
        search_id_wait_s=api.search_id_wait_s,
    )


def _state_url(url: str | None, path: str | None) -> str | None:
    """`[state] url`: a PostgreSQL URL without a password (that comes from PGPASSWORD or
    ~/.pgpass, never from a file that is shared and versioned)."""
    if url is None:
        return None
    if path is not None:
        raise Problem("state.url", "and state.path are both given", "keep one of them")
    parts = urlsplit(url)
    # The password check comes first: no message may echo a URL that carries one.
    if parts.password is not None or "password=" in parts.query:
        raise Problem(
            "state.url",
            "carries a password",
            "remove it from the URL and set PGPASSWORD or ~/.pgpass",
        )
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise Problem(
            "state.url",
            f"{shown(url)} is not a PostgreSQL URL",
            f"write it like {EXAMPLES['state.url']}",
        )
    return url


def _queries(
    s: StudyTable,
) -> tuple[SeedQuery | None, RestQuery | None, Translation | None, tuple[str, ...]]:
    if (s.condition_groups is None) == (s.query is None):
        both = s.condition_groups is not None
        return_key = "study.query" if both else "study.condition_groups"
        raise Problem(
            return_key,
            "both query forms are given" if both else "no query is given",
            "give exactly one of condition_groups (any source) or query (research-api only)",
        )
    if s.query is not None:
        if s.source != "research-api":
            raise Problem(
                "study.query",
                f"the REST query form does not work with source {s.source!r}",
                "write it as condition_groups instead",
            )
        try:
            rest = parse_rest_query(s.query)
            check_region_codes(rest)
        except QueryError as e:
            raise _query_problem("study.query", e) from None
        translation = translate_rest(rest)
        return None, rest, translation, translation.warnings
    try:
        seed = parse_seed_query(s.condition_groups)
        check_region_codes(seed)
        if s.source != "research-api":
            return seed, None, None, ()
        translation = translate_to_rest(seed)
    except QueryError as e:
        raise _query_problem("study.condition_groups", e) from None
    return seed, translation.rest, translation, translation.warnings
