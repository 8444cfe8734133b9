"""The study file (harvester/config): every mistake is one line naming the key and the fix."""

from __future__ import annotations

import os
import typing
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import trustme

from harvester import ConfigError, CredentialsError
from harvester.config import Credentials, load_study, loads_study, resolve_credentials

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

NL = '[{operator = "and", conditions = [{field = "region_code", operator = "eq", field_values = ["NL"]}]}]'  # noqa: E501
REST_NL = '{and = [{operation = "EQ", field_name = "region_code", field_values = ["NL"]}]}'

BASE: dict[str, dict[str, str]] = {
    "study": {
        "name": '"t"',
        "source": '"research-api"',
        "start_date": '"2023-01-01"',
        "end_date": '"2023-03-31"',
        "window": '"7d"',
        "condition_groups": NL,
    },
    "api": {"base_url": '"http://127.0.0.1:8765"'},
    "output": {"path": '"out/t"'},
}


def toml(**changes: str | None) -> str:
    """BASE with `table__key=value` changes (None deletes the key; `table=None` the table)."""
    tables = {t: dict(keys) for t, keys in BASE.items()}
    for name, value in changes.items():
        table, _, key = name.partition("__")
        if not key:
            assert value is None
            del tables[table]
        elif value is None:
            del tables[table][key]
        else:
            tables.setdefault(table, {})[key] = value
    return "\n".join(
        f"[{t}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) for t, keys in tables.items()
    )


RQS = '"rqs"'

# (id, toml text, key named in the message, expected part of the message)
INVALID: list[tuple[str, str, str, str]] = [
    ("toml syntax", toml().replace('name = "t"', 'name = "t'), "line 2, column", "TOML syntax"),
    ("toml duplicate key", toml() + "[study]\n", "line", "TOML syntax"),
    ("unknown key", toml(study__windw='"7d"'), "study.windw", 'did you mean "window"'),
    ("unknown table", toml() + "[studdy]\n", "[studdy]", "did you mean [study]"),
    ("key in wrong table", toml(api__limit="10"), "api.limit", "belongs in [study]; move it there"),
    ("unknown key, no match", toml(output__zzz="1"), "output.zzz", "known keys in [output]"),
    ("missing name", toml(study__name=None), "study.name", "required key is missing"),
    ("missing start", toml(study__start_date=None), "study.start_date", 'start_date = "'),
    ("missing output", toml(output=None), "[output]", "table is missing"),
    ("missing output.path", toml(output__path=None), "output.path", "required key"),
    ("table not a table", "study = 3\n" + toml(study=None), "study", "expected a table"),
    ("wrong type limit", toml(study__source=RQS, study__limit='"100"'), "study.limit", "integer"),
    ("wrong type window", toml(study__window="7"), "study.window", 'window = "7d"'),
    ("fields not a list", toml(study__fields='"id,username"'), "study.fields", "an array"),
    ("field not a string", toml(study__fields='["id", 3]'), "study.fields[1]", "a string"),
    ("bad source", toml(study__source='"tiktok"'), "study.source", "is not allowed"),
    ("bad stage", toml(study__stage='"prod"'), "study.stage", "'test' or 'execution'"),
    ("bad category", toml(study__category='"comment"'), "study.category", "'video'"),
    ("bad name", toml(study__name='"a/b"'), "study.name", "cannot name files"),
    ("bad date", toml(study__end_date='"2023-02-30"'), "study.end_date", "not a calendar date"),
    ("date format", toml(study__start_date='"01/02/2023"'), "study.start_date", "YYYY-MM-DD"),
    ("date with time", toml(study__start_date="2023-01-01T10:00:00"), "study.start_date", "time"),
    ("reversed dates", toml(study__end_date='"2022-12-01"'), "study.end_date", "swap the dates"),
    ("too early", toml(study__start_date='"2013-01-01"'), "study.start_date", "from 2016"),
    ("window 0d", toml(study__window='"0d"'), "study.window", 'from 1 to 30 like "7d"'),
    ("window 31d", toml(study__window='"31d"'), "study.window", "from 1 to 30"),
    ("window weeks", toml(study__window='"1w"'), "study.window", "whole number of days"),
    (
        "limit on public api",
        toml(study__limit="500"),
        "study.limit",
        "only to RQS tasks; remove it",
    ),
    ("limit over max", toml(study__source=RQS, study__limit="200000"), "study.limit", "100,000"),
    (
        "limit over test max",
        toml(study__source=RQS, study__stage='"test"', study__limit="6000"),
        "study.limit",
        "5,000",
    ),
    ("unknown field", toml(study__fields='["id", "likes"]'), "study.fields", "'likes'"),
    ("field not returnable", toml(study__fields='["duration_type"]'), "study.fields", "rqs"),
    ("empty fields", toml(study__fields="[]"), "study.fields", "fields is empty"),
    (
        "operator not allowed",
        toml(study__condition_groups=NL.replace('"eq"', '"gt"')),
        "study.condition_groups[0].conditions[0]",
        "'gt' is not allowed for region_code",
    ),
    (
        "unknown condition key",
        toml(study__condition_groups=NL.replace("field_values", "values")),
        "study.condition_groups",
        "'values'",
    ),
    (
        "rest query with rqs",
        toml(study__source=RQS, study__condition_groups=None, study__query=REST_NL),
        "study.query",
        "condition_groups instead",
    ),
    ("both query forms", toml(study__query=REST_NL), "study.query", "exactly one"),
    ("no query", toml(study__condition_groups=None), "study.condition_groups", "exactly one"),
    (
        "bad rest query",
        toml(study__condition_groups=None, study__query='{and = [{field_name = "x"}]}'),
        "study.query",
        "field",
    ),
    (
        "partition not allowed",
        toml(output__partition_by='["like_count"]'),
        "partition_by[0]",
        "use",
    ),
    (
        "partition not in fields",
        toml(study__fields='["id", "username"]', output__partition_by='["region_code"]'),
        "output.partition_by[0]",
        "not in study.fields",
    ),
    (
        "partition repeated",
        toml(output__partition_by='["create_date", "create_date"]'),
        "output.partition_by[1]",
        "repeated",
    ),
    (
        "tls off remote",
        toml(api__base_url='"https://example.org"', api__verify_tls="false"),
        "api.verify_tls",
        "loopback",
    ),
    ("http remote", toml(api__base_url='"http://example.org"'), "api.base_url", "https://"),
    ("not a url", toml(api__base_url='"ftp:/x"'), "api.base_url", "open.tiktokapis.com"),
    ("secret as env name", toml(api__client_key_env='"ab-12 cd"'), "api.client_key_env", "NAME"),
    ("concurrency 0", toml(api__max_concurrency="0"), "api.max_concurrency", "at least 1"),
    ("rate negative", toml(api__requests_per_second="-1"), "api.requests_per_second", "more than"),
    ("quota zero", toml(quota__daily_requests="0"), "quota.daily_requests", "at least 1"),
    ("on_exhausted", toml(quota__on_exhausted='"retry"'), "quota.on_exhausted", "'wait' or 'exit'"),
    (
        "negative prior",
        toml(study__expected_records_per_day="-5"),
        "study.expected_records_per_day",
        "at least 0",
    ),
    (
        "region UK",
        toml(study__condition_groups=NL.replace('"NL"', '"UK"')),
        "study.condition_groups[0].conditions[0]",
        "did you mean 'GB'?",
    ),
    (
        "region CA",
        toml(study__condition_groups=NL.replace('"NL"', '"NL", "CA"').replace('"eq"', '"in"')),
        "study.condition_groups[0].conditions[0]",
        "Canada is outside the Research API's scope",
    ),
    (
        "region CA, rqs",
        toml(study__source=RQS, study__condition_groups=NL.replace('"NL"', '"CA"')),
        "study.condition_groups[0].conditions[0]",
        "Canada is outside the Research API's scope",
    ),
    (
        "region UK, rest form",
        toml(study__condition_groups=None, study__query=REST_NL.replace('"NL"', '"UK"')),
        "study.query.and[0]",
        "did you mean 'GB'?",
    ),
    (
        "full scan not a boolean",
        toml(study__allow_full_scan='"yes"'),
        "study.allow_full_scan",
        "true or false",
    ),
    ("empty output path", toml(output__path='""'), "output.path", "is empty"),
    ("output holds config", toml(output__path='"."'), "output.path", "holds the study file"),
    ("state in output", toml(state__path='"out/t/s.sqlite"'), "state.path", "inside output.path"),
    ("unknown dataset scheme", toml(output__path='"ftp://lab/x"'), "output.path", "unknown scheme"),
    ("s3 without bucket", toml(output__path='"s3:///x"'), "output.path", "names no bucket"),
    ("s3 without prefix", toml(output__path='"s3://lab-data"'), "output.path", "names no prefix"),
    ("s3 bucket name", toml(output__path='"s3://Lab_Data/x"'), "output.path", "no valid bucket"),
    ("s3 dotted segment", toml(output__path='"s3://lab/a/../b"'), "output.path", "'..'"),
    (
        "s3 credentials in url",
        toml(output__path='"s3://AKIAX:s3cret@lab/x"'),
        "output.path",
        "holds credentials",
    ),
    (
        "password in state url",
        toml(state__url='"postgresql://lab:s3cret@db:5432/lab"'),
        "state.url",
        "carries a password; remove it from the URL and set PGPASSWORD",
    ),
    (
        "password in state url query",
        toml(state__url='"postgresql://lab@db/lab?password=s3cret"'),
        "state.url",
        "carries a password",
    ),
    ("not a postgres url", toml(state__url='"mysql://db/lab"'), "state.url", "PostgreSQL URL"),
    (
        "state url and path",
        toml(state__url='"postgresql://lab@db/lab"', state__path='"s.sqlite"'),
        "state.url",
        "keep one of them",
    ),
    ("pool without postgres", toml(quota__pool='"lab"'), "quota.pool", "set [state] url"),
    (
        "share without pool",
        toml(quota__share="0.5", state__url='"postgresql://lab@db/lab"'),
        "quota.share",
        "name the pool",
    ),
    (
        "share above one",
        toml(quota__share="1.5", quota__pool='"lab"', state__url='"postgresql://lab@db/lab"'),
        "quota.share",
        "at most 1",
    ),
    (
        "secret env name",
        toml(api__client_secret_env='"my secret!"'),
        "api.client_secret_env",
        "NAME",
    ),
    ("timeout zero", toml(api__timeout_s="0"), "api.timeout_s", "more than 0"),
    ("attempts zero", toml(api__max_attempts="0"), "api.max_attempts", "at least 1"),
    ("wait negative", toml(api__retry_wait_s="-1"), "api.retry_wait_s", "more than 0"),
    ("wait max text", toml(api__retry_wait_max_s='"long"'), "api.retry_wait_max_s", "a number"),
    ("inclusive text", toml(api__end_date_inclusive='"yes"'), "api.end_date_inclusive", "true or"),
    ("records negative", toml(quota__daily_records="-5"), "quota.daily_records", "at least 1"),
    ("window share", toml(quota__window_fraction="1.5"), "quota.window_fraction", "at most 1"),
    ("settle days", toml(study__settle_days="-1"), "study.settle_days", "at least 0"),
    ("history not bool", toml(output__history='"yes"'), "output.history", "true or false"),
    ("lease zero", toml(state__lease_s="0"), "state.lease_s", "more than 0"),
    ("search id wait", toml(api__search_id_wait_s="-1"), "api.search_id_wait_s", "at least 0"),
    ("ca bundle missing", toml(api__ca_bundle='"no-such.pem"'), "api.ca_bundle", "not a file"),
]


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _check_line(message: str, label: str, key: str, expected: str) -> None:
    assert "\n" not in message
    assert message.startswith(f"{label}: "), message
    where, _, rest = message[len(label) + 2 :].partition(": ")
    assert key in where, message
    assert "; " in rest and rest.split("; ")[-1].strip(), f"no fix in: {message}"
    assert expected in message, message


@pytest.mark.parametrize(
    ("text", "key", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_config_is_one_line(tmp_path: Path, text: str, key: str, expected: str) -> None:
    before = _tree(tmp_path)
    with pytest.raises(ConfigError) as info:
        loads_study(text, tmp_path / "study.toml")
    _check_line(str(info.value), "study.toml", key, expected)
    assert _tree(tmp_path) == before, "loading must create nothing"


def test_a_password_never_reaches_the_message(tmp_path: Path) -> None:
    text = toml(state__url='"postgres://lab:s3cret@db:5432/lab"')
    with pytest.raises(ConfigError) as info:
        loads_study(text, tmp_path / "study.toml")
    assert "s3cret" not in str(info.value)
    text = toml(output__path='"s3://AKIAEXAMPLE:s3cret/key@lab/x"')
    with pytest.raises(ConfigError) as info:
        loads_study(text, tmp_path / "study.toml")
    assert "s3cret" not in str(info.value) and "AKIAEXAMPLE" not in str(info.value)
    assert "holds credentials" in str(info.value)


def test_an_object_store_dataset_keeps_its_siblings_beside_it(tmp_path: Path) -> None:
    text = toml(output__path='"s3://lab-data/tiktok/nl"', output__history="true")
    study = loads_study(text, tmp_path / "study.toml")
    assert study.output_url == study.dataset == "s3://lab-data/tiktok/nl"
    assert study.history == "s3://lab-data/tiktok/nl.history"
    # The state stays on the machine, beside the study file; nothing is created.
    assert study.state_path == tmp_path.resolve() / "t.state.sqlite"
    assert not study.output_path.exists()


def test_state_in_postgres_and_a_pool(tmp_path: Path) -> None:
    url = "postgresql://harvester@db.example.org:5432/lab"
    study = loads_study(
        toml(state__url=f'"{url}"', quota__pool='"our-lab"', quota__share="0.25"),
        tmp_path / "study.toml",
    )
    assert study.state_url == url and study.lease_s == 60.0
    assert (study.quota.pool, study.quota.share) == ("our-lab", 0.25)
    assert loads_study(toml(), tmp_path / "study.toml").state_url is None  # SQLite by default


def test_every_key_of_the_study_file_has_a_mistake_in_the_corpus() -> None:
    from harvester.config._schema import StudyFile

    def model_of(annotation: Any) -> Any:  # a table, or the item of an array of tables
        args = typing.get_args(annotation)
        return model_of(next(a for a in args if a is not type(None))) if args else annotation

    keys = [
        f"{table}.{key}"
        for table, info in StudyFile.model_fields.items()
        if table != "enrich"  # [[enrich]] blocks have their own corpus: test_config_enrich.py
        for key in model_of(info.annotation).model_fields
    ]
    covered = {c[2] for c in INVALID}
    untested = [k for k in keys if not any(c == k or c.startswith(k + "[") for c in covered)]
    assert not untested, f"no invalid case names {untested}"


def test_valid_config_resolves_everything(tmp_path: Path) -> None:
    study = loads_study(toml(), tmp_path / "study.toml")
    assert study.output_path == tmp_path / "out" / "t"
    assert study.state_path == tmp_path / "out" / "t.state.sqlite"
    assert study.config_path == tmp_path / "study.toml"
    assert (study.start_date, study.end_date, study.window_days) == (
        date(2023, 1, 1),
        date(2023, 3, 31),
        7,
    )
    assert study.fields[:2] == ("id", "create_time")
    assert study.limit is None and study.rest_query is not None and study.seed_query is not None
    assert study.api.base_url == "http://127.0.0.1:8765"
    assert study.api.max_concurrency == 5 and study.quota.daily_requests == 1000
    assert study.partition_by == ("create_date",)
    assert _tree(tmp_path) == []


def test_defaults_for_rqs(tmp_path: Path) -> None:
    text = toml(study__source=RQS, study__window=None, state__path='"/tmp/x.sqlite"')
    study = loads_study(text, tmp_path / "s.toml")
    assert study.limit == 1000 and study.rest_query is None and study.translation is None
    assert study.window_days == 7
    assert study.api.base_url == "http://127.0.0.1:8765" and study.api.verify_tls
    assert study.state_path == Path("/tmp/x.sqlite")
    assert not study.is_sample


def test_rqs_has_no_default_endpoint_at_tiktok(tmp_path: Path) -> None:
    """Fact 10: TikTok serves the RQS only inside its VCE; our HTTP binding is our own."""
    with pytest.raises(ConfigError) as info:
        loads_study(toml(study__source=RQS, api=None), tmp_path / "s.toml")
    message = str(info.value)
    assert "api.base_url" in message and "harvester simulate" in message
    assert 'source = "pyrqs"' in message and "\n" not in message
    # pyrqs needs no endpoint, and the public API keeps its documented default.
    pyrqs = loads_study(toml(study__source='"pyrqs"', api=None), tmp_path / "s.toml")
    assert pyrqs.source == "pyrqs"
    public = loads_study(toml(api=None), tmp_path / "s.toml")
    assert public.api.base_url == "https://open.tiktokapis.com"


def test_pyrqs_needs_no_credentials_of_ours(tmp_path: Path) -> None:
    """The SDK authenticates inside the VCE: nothing is read from the environment."""
    study = loads_study(toml(study__source='"pyrqs"'), tmp_path / "s.toml")
    assert not study.needs_credentials
    assert resolve_credentials(study, {}) == Credentials("", "")
    rqs = loads_study(toml(study__source=RQS), tmp_path / "s.toml")
    with pytest.raises(CredentialsError, match="TIKTOK_CLIENT_KEY"):
        resolve_credentials(rqs, {})


def test_id_and_create_time_are_always_fetched(tmp_path: Path) -> None:
    study = loads_study(toml(study__fields='["username"]'), tmp_path / "s.toml")
    assert study.fields == ("id", "create_time", "username")


def test_rest_form_and_native_toml_dates(tmp_path: Path) -> None:
    text = toml(study__condition_groups=None, study__query=REST_NL, study__end_date="2023-01-31")
    study = loads_study(text, tmp_path / "s.toml")
    assert study.seed_query is None and study.rest_query is not None
    assert study.end_date == date(2023, 1, 31)


def test_fingerprint_covers_the_data_not_the_plumbing(tmp_path: Path) -> None:
    def fp(**changes: str | None) -> str:
        return loads_study(toml(**changes), tmp_path / "s.toml").fingerprint()

    base = fp()
    assert base == fp()
    assert len(base) == 64
    # What shapes the data changes it...
    assert fp(study__end_date='"2023-04-01"') != base
    assert fp(study__fields='["id", "username"]') != base
    assert fp(study__condition_groups=NL.replace("NL", "BE")) != base
    assert fp(study__source=RQS) != base
    # ...what only moves it, paces it or plans it does not.
    assert fp(output__path='"elsewhere/x"', api__max_concurrency="2") == base
    assert fp(quota__daily_requests="10", api__client_key_env='"K"') == base
    assert fp(study__window='"1d"') == base
    study = loads_study(toml(), tmp_path / "s.toml")
    other = loads_study(toml(study__window='"1d"'), tmp_path / "s.toml")
    assert study.plan_fingerprint() != other.plan_fingerprint()


def test_plan_needs_no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIKTOK_CLIENT_KEY", raising=False)
    monkeypatch.delenv("TIKTOK_CLIENT_SECRET", raising=False)
    study = loads_study(toml(), tmp_path / "s.toml")  # no error: credentials come later
    assert study.api.client_key_env == "TIKTOK_CLIENT_KEY"
    with pytest.raises(CredentialsError, match="TIKTOK_CLIENT_KEY"):
        resolve_credentials(study)


def test_credentials_from_named_variables(tmp_path: Path) -> None:
    study = loads_study(
        toml(api__client_key_env='"MY_KEY"', api__client_secret_env='"MY_SECRET"'),
        tmp_path / "s.toml",
    )
    creds = resolve_credentials(study, {"MY_KEY": "key-1", "MY_SECRET": "hunter2"})
    assert creds == Credentials("key-1", "hunter2")
    assert "hunter2" not in repr(creds) and "hunter2" not in str(creds)
    assert "key-1" in repr(creds)
    with pytest.raises(CredentialsError) as info:
        resolve_credentials(study, {"MY_KEY": "key-1"})
    _check_line(str(info.value), "s.toml", "api.client_secret_env", "MY_SECRET is not set")
    with pytest.raises(CredentialsError):
        resolve_credentials(study, {"MY_KEY": " ", "MY_SECRET": "x"})


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file; check the path"):
        load_study(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="is a folder; give the path"):
        load_study(tmp_path)
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[study]\nname = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8; save"):
        load_study(bad)


def test_unreadable_file_reports_permissions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ConfigError, match=r"cannot read the study file \(Permission denied\)"):
        load_study(tmp_path / "s.toml")


def test_output_path_checks_create_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "afile").write_text("x")
    before = _tree(tmp_path)
    with pytest.raises(ConfigError, match="afile is a file") as info:
        loads_study(toml(output__path='"afile/sub/data"'), tmp_path / "s.toml")
    _check_line(str(info.value), "s.toml", "output.path", "cannot create")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        loads_study(toml(output__path='"afile"'), tmp_path / "s.toml")
    with pytest.raises(ConfigError, match=r"state\.path: .* exists and is not a file"):
        loads_study(toml(state__path='".."', output__path='"o/x"'), tmp_path / "sub" / "s.toml")

    real_access = os.access

    def no_write(path: str | os.PathLike[str], mode: int) -> bool:
        return False if Path(path) == tmp_path else real_access(path, mode)

    monkeypatch.setattr(os, "access", no_write)
    with pytest.raises(ConfigError, match="is not writable; choose a writable folder"):
        loads_study(toml(), tmp_path / "s.toml")
    assert _tree(tmp_path) == before


def test_load_study_labels_errors_with_the_given_path(tmp_path: Path) -> None:
    path = tmp_path / "demo.toml"
    path.write_text(toml(study__window='"0d"'))
    with pytest.raises(ConfigError) as info:
        load_study(path)
    assert str(info.value) == (
        f'{path}: study.window: "0d" is not a window; '
        'use a whole number of days from 1 to 30 like "7d"'
    )


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    study = load_study(path)
    assert study.output_path.is_absolute() and study.state_path.is_absolute()
    assert study.fingerprint()


def test_shipped_configs_exist() -> None:
    names = {p.name for p in CONFIGS.glob("*.toml")}
    assert {
        "demo.toml",
        "demo-rqs.toml",
        "example-research-api.toml",
        "example-rqs.toml",
        "example-pyrqs.toml",
    } <= names


def test_test_stage_defaults(tmp_path: Path) -> None:
    study = loads_study(toml(study__source=RQS, study__stage='"test"'), tmp_path / "s.toml")
    # No limit of the study's own: the day's 5,000 records spread over the windows decide.
    assert (study.limit, study.quota.daily_records) == (5_000, 5_000)
    assert study.is_sample
    capped = loads_study(
        toml(study__source=RQS, study__stage='"test"', study__limit="100"), tmp_path / "s.toml"
    )
    assert capped.limit == 100
    # A sample and a full harvest of the same query are different datasets.
    execution = loads_study(toml(study__source=RQS, study__limit="5000"), tmp_path / "s.toml")
    assert execution.fingerprint() != study.fingerprint()
    with pytest.raises(ConfigError, match=r"quota\.daily_records: 6,000 is more than the test"):
        loads_study(
            toml(study__source=RQS, study__stage='"test"', quota__daily_records="6000"),
            tmp_path / "s.toml",
        )
    public = loads_study(toml(study__stage='"test"'), tmp_path / "s.toml")
    assert public.quota.daily_records == 100_000


def test_ca_bundle_resolves_beside_the_study_and_must_hold_a_certificate(tmp_path: Path) -> None:
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "proxy-ca.pem"))
    study = loads_study(toml(api__ca_bundle='"proxy-ca.pem"'), tmp_path / "s.toml")
    assert study.api.ca_bundle == tmp_path / "proxy-ca.pem"
    (tmp_path / "notes.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError) as info:
        loads_study(toml(api__ca_bundle='"notes.pem"'), tmp_path / "s.toml")
    _check_line(str(info.value), "s.toml", "api.ca_bundle", "holds no CA certificate")


def test_verify_tls_false_is_a_warning_the_run_prints(tmp_path: Path) -> None:
    study = loads_study(toml(api__verify_tls="false"), tmp_path / "s.toml")
    assert not study.api.verify_tls
    assert any("verify_tls = false" in w for w in study.warnings)
    assert not loads_study(toml(), tmp_path / "s.toml").warnings
