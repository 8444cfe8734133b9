"""The validated study and the credentials: what the rest of harvester reads."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

from harvester._credentials import Credentials
from harvester._exceptions import CredentialsError
from harvester.query import (
    RestQuery,
    SeedQuery,
    Source,
    Stage,
    Translation,
    ValueSplit,
    value_split,
)


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """How to talk to the API; none of it changes the data."""

    base_url: str
    client_key_env: str
    client_secret_env: str
    max_concurrency: int
    requests_per_second: float
    timeout_s: float
    max_attempts: int
    end_date_inclusive: bool
    verify_tls: bool
    #: Backoff between attempts of one request: the first wait and the longest.
    retry_wait_s: float = 1.0
    retry_wait_max_s: float = 60.0
    #: How long, in total, a rejected fresh search id is waited for (growing waits from
    #: `retry_wait_s`) before its window restarts from cursor 0.
    search_id_wait_s: float = 60.0
    #: Extra CA certificates to trust beside the system's (and SSL_CERT_FILE's).
    ca_bundle: Path | None = None


@dataclass(frozen=True, slots=True)
class QuotaSettings:
    daily_requests: int
    daily_records: int
    on_exhausted: Literal["wait", "exit"]
    #: A lab's shared daily ledger (PostgreSQL state only) and this study's cap on it.
    pool: str | None = None
    share: float | None = None
    #: A window's expected requests and records stay within this fraction of the day's quota,
    #: divided among the study's concurrent windows (bigger windows are split before they start).
    window_fraction: float = 0.5

    @property
    def study_requests(self) -> int:
        """The requests a day this study may spend (its share of a pool's)."""
        return max(1, int(self.daily_requests * (self.share or 1.0)))

    @property
    def study_records(self) -> int:
        return max(1, int(self.daily_records * (self.share or 1.0)))


@dataclass(frozen=True, slots=True)
class Enrichment:
    """One `[[enrich]]` block, resolved: what to fetch about which harvested videos, and where
    its dataset goes. `where` is SQL over the video dataset (DuckDB), None for every video."""

    kind: str
    where: str | None
    max_per_target: int | None
    replies: bool
    output_path: Path
    #: `s3://bucket/prefix.comments` when the dataset is in an object store (`output_path` is
    #: then not used).
    output_url: str | None = None

    @property
    def dataset(self) -> str:
        """Where the dataset is: its object-store URL, or its folder."""
        return self.output_url or str(self.output_path)


@dataclass(frozen=True, slots=True)
class Study:
    """A validated study with every default applied and every path absolute.

    `seed_query` is the condition_groups form (None when the study gave a REST query);
    `rest_query` is the REST form: as given, or translated from the seed form; it is None for
    RQS sources. For the public API, `translation` holds what is really sent and the exact query
    every returned record is checked against (see `harvester.query.translate_to_rest`).
    `limit` is the RQS per-task limit (None for the public API).
    """

    name: str
    source: Source
    category: str
    fields: tuple[str, ...]
    start_date: date
    end_date: date
    window_days: int
    stage: Stage
    limit: int | None
    expected_records_per_day: float | None
    allow_full_scan: bool
    seed_query: SeedQuery | None
    rest_query: RestQuery | None
    translation: Translation | None
    api: ApiSettings
    quota: QuotaSettings
    output_path: Path
    partition_by: tuple[str, ...]
    state_path: Path
    config_path: Path
    warnings: tuple[str, ...] = ()
    #: `postgresql://user@host:port/db` when the state lives in PostgreSQL (no password);
    #: `state_path` then only places the run logs.
    state_url: str | None = None
    #: How long a worker keeps a leaf without a sign of life (PostgreSQL state only).
    lease_s: float = 60.0
    #: `[[enrich]]` blocks; not part of the fingerprint (adding one never replans the videos).
    enrichments: tuple[Enrichment, ...] = ()
    #: The dates as written when they are relative (`"today-3d"`), None for a fixed date: a
    #: relative date is resolved at every run, and its rule, not its value, defines the data.
    start_rule: str | None = None
    end_rule: str | None = None
    #: Days after its end a window's counts keep changing; until then every run refreshes it.
    settle_days: int = 10
    #: Where superseded rows go (`[output] history = true`), None to drop them.
    history_path: Path | None = None
    #: `[output] path` when it is an object-store URL (`s3://bucket/prefix`). `output_path` is
    #: then a folder beside the state for what stays on the machine (quarantined records).
    output_url: str | None = None

    @property
    def dataset(self) -> str:
        """Where the dataset is: its object-store URL, or its folder."""
        return self.output_url or str(self.output_path)

    @property
    def history(self) -> str | None:
        """Where superseded rows go (`<dataset>.history`), None to drop them."""
        if self.history_path is None:
            return None
        return f"{self.output_url}.history" if self.output_url else str(self.history_path)

    @property
    def is_sample(self) -> bool:
        """A VCE test-stage study: every task returns a random sample, never all matches."""
        return self.stage == "test" and self.source != "research-api"

    @property
    def relative(self) -> bool:
        """Whether a date moves with the calendar (the plan grows at every run)."""
        return self.start_rule is not None or self.end_rule is not None

    @property
    def needs_credentials(self) -> bool:
        """pyrqs authenticates inside TikTok's VCE: harvester holds no key or secret for it."""
        return self.source != "pyrqs"

    @property
    def fetch_fields(self) -> tuple[str, ...]:
        """`fields` plus what the local post-filter of a translated query needs."""
        extra = self.translation.extra_fields if self.translation else ()
        return self.fields + tuple(f for f in extra if f not in self.fields)

    @property
    def value_split(self) -> ValueSplit | None:
        """The IN list a day too big for a day's quota is cut by (public API only, where a
        window cannot be cut below a day in time)."""
        if self.translation is None or self.is_sample:
            return None
        return value_split(self.translation.rest)

    def fingerprint(self) -> str:
        """sha256 of what defines the data; see the module docstring for what is left out."""
        if self.seed_query is not None:
            form, query = "seed", self.seed_query.fingerprint_json()
        else:
            assert self.rest_query is not None
            form, query = "rest", self.rest_query.fingerprint_json()
        doc = {
            "version": 1,
            "source": self.source,
            "category": self.category,
            "fields": sorted(self.fields),
            "query_form": form,
            "query": json.loads(query),
            "start_date": self.start_rule or self.start_date.isoformat(),
            "end_date": self.end_rule or self.end_date.isoformat(),
            "limit": self.limit,
        }
        if self.is_sample:
            # A sample and a full harvest are different datasets: switching needs --replan.
            # (Added only for the test stage, so every other study keeps its fingerprint.)
            doc["stage"] = "test"
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def plan_fingerprint(self) -> str:
        """The data's fingerprint plus the window length: equal plans have equal shards."""
        text = f"{self.fingerprint()}:window={self.window_days}d"
        return hashlib.sha256(text.encode()).hexdigest()


def resolve_credentials(study: Study, environ: Mapping[str, str] | None = None) -> Credentials:
    """Read the client key and secret from the environment variables the study names.

    A pyrqs study needs none (the SDK authenticates inside the VCE): it gets empty ones and
    the environment is not read.
    """
    if not study.needs_credentials:
        return Credentials("", "")
    env = os.environ if environ is None else environ
    values = []
    for key, var, what in (
        ("api.client_key_env", study.api.client_key_env, "client key"),
        ("api.client_secret_env", study.api.client_secret_env, "client secret"),
    ):
        value = env.get(var, "").strip()
        if not value:
            raise CredentialsError(
                f"{study.config_path.name}: {key}: environment variable {var} is not set; "
                f"export {var}=<your {what}> or name another variable in [api] {key[4:]}"
            )
        values.append(value)
    return Credentials(values[0], values[1])
