"""The study file: TOML → validated, fully resolved `Study`, or one `ConfigError` line.

Scheduled jobs drive harvester from these files, so a mistake must be reported before any
request, on one line that names the file, the key and the fix:
`demo.toml: study.window: "0d" is not a window; use a whole number of days from 1 to 30 like "7d"`.
Pydantic checks the shape (unknown keys, types, missing keys); the checks that need several keys
at once (dates, query form against source, partitions against fields, paths) follow in plain code.
Credentials are not part of loading: `plan` must work without them, so only the commands that
talk to the API call `resolve_credentials`.

Decisions:
- Paths are resolved against the study file's folder. `[state] path` defaults to
  `<parent of output.path>/<study.name>.state.sqlite`: beside the dataset, never inside it
  (anything in the dataset root that state does not know is removed at start-up).
- Defaults: `window = "7d"` (at most 30 days for research-api); the RQS `limit` and the daily
  record quota follow `stage` (test: 100 and 5,000; execution: 1,000 and 100,000). `limit` is
  refused for research-api, where it means nothing.
- `id` and `create_time` are always fetched and kept: records are deduplicated by `id` and
  assigned to windows by `create_time`.
- `Study.fingerprint()` covers what defines the data — source, category, fields (as a set),
  query, dates and the RQS limit — not the window length (it changes the plan, not the data;
  `plan_fingerprint()` adds it), paths, credentials, concurrency or quota settings.
"""

from __future__ import annotations

from harvester._credentials import Credentials
from harvester.config._load import load_study, loads_study
from harvester.config._schema import DEFAULT_BASE_URL
from harvester.config._study import (
    ApiSettings,
    Enrichment,
    QuotaSettings,
    Study,
    resolve_credentials,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "ApiSettings",
    "Credentials",
    "Enrichment",
    "QuotaSettings",
    "Study",
    "load_study",
    "loads_study",
    "resolve_credentials",
]
