"""Loading: read the file, check the shape, then the meaning; resolve defaults and paths.

The meaning is checked by the modules that own each part of the study: when (_dates), what is
asked (_asked), where the data lives (_places), the quota (_quota), the API (_api) and the
enrichments (_enrich)."""

from __future__ import annotations

import os
import re
import tomllib
from datetime import UTC, date, datetime
from pathlib import Path

from pydantic import ValidationError

from harvester._exceptions import ConfigError
from harvester.config import _asked
from harvester.config._api import api_settings
from harvester.config._dates import period
from harvester.config._enrich import enrichments
from harvester.config._places import partitions, places
from harvester.config._quota import daily_records, quota_settings
from harvester.config._schema import Problem, StudyFile, pydantic_problem, shown
from harvester.config._study import Study

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


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


def _resolve(model: StudyFile, config_path: Path, today: date) -> Study:
    """The study the file describes, checked in the order a reader of the file meets it: the
    first problem found is the one reported."""
    s = model.study
    _check_name(s.name)
    when = period(s, today)
    fields = _asked.fields(s)
    limit = _asked.limit(s)
    records = daily_records(model)
    seed, rest, translation, warnings = _asked.queries(s)
    where = places(model, config_path)
    quota = quota_settings(model, records, where.state_url)
    enriched = enrichments(
        model, config_path.parent, where.output, where.state, fields, where.output_url
    )
    if not model.api.verify_tls:
        warnings += ("api.verify_tls = false: server certificates are not checked (loopback only)",)
    return Study(
        name=s.name,
        source=s.source,
        category=s.category,
        fields=fields,
        start_date=when.start,
        end_date=when.end,
        window_days=when.window_days,
        stage=s.stage,
        limit=limit,
        expected_records_per_day=s.expected_records_per_day,
        allow_full_scan=s.allow_full_scan,
        seed_query=seed,
        rest_query=rest,
        translation=translation,
        api=api_settings(model.api, s.source, config_path.parent),
        quota=quota,
        output_path=where.output,
        partition_by=partitions(model.output.partition_by, fields),
        state_path=where.state,
        config_path=config_path,
        enrichments=enriched,
        start_rule=when.start_rule,
        end_rule=when.end_rule,
        settle_days=s.settle_days,
        history_path=where.history,
        warnings=warnings,
        state_url=where.state_url,
        lease_s=model.state.lease_s,
        output_url=where.output_url,
    )


def _check_name(name: str) -> None:
    if not _NAME_RE.fullmatch(name):
        raise Problem(
            "study.name",
            f"{shown(name)} cannot name files",
            "use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
