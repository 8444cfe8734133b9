"""The state schema: one definition for both databases, and how older ones are brought to it.

Every table is keyed by study: a PostgreSQL database holds a lab's studies (and their shared
quota ledger), a SQLite file holds one study, whose rows carry the empty study key. No row
references `studies`: a store answers, and counts quota, before its study is opened. Quota rows
are keyed by ledger instead (a pool's, or one study's). The SQL is what SQLite and PostgreSQL
both read, so `TABLES` creates a new database of either kind as it is.

`MIGRATIONS[dialect][v]` brings a database an older harvester wrote from version `v - 1` to `v`;
a schema change edits `TABLES` and adds the next migration to both; a released migration is
never edited. The two histories differ up to version 5 (SQLite files had no study key before).
"""

from __future__ import annotations

from harvester.state._sql import Tx

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "TABLES", "upgrade"]

SCHEMA_VERSION = 6

#: The enrichments' tables (schema 6): per kind, every target with its status, checkpointed
#: cursor and lease; the staged segments; the dataset files; error counts. Released: a later
#: change adds a migration, it does not edit this text.
_ENRICH = """
CREATE TABLE enrich_targets (
    study TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    parent TEXT,
    comment_id BIGINT,
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'running', 'done', 'unavailable', 'failed')),
    cursor BIGINT,
    pages INTEGER NOT NULL DEFAULT 0,
    rows BIGINT NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    outcome TEXT,
    message TEXT,
    file TEXT,
    updated_at DOUBLE PRECISION NOT NULL,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION,
    -- When the target's counts settle (its newest video's creation plus settle_days), when it
    -- was last fetched, and whether the dataset still holds rows of an earlier fetch that its
    -- next publication replaces (a refresh of a target not settled when it was fetched).
    settles_at DOUBLE PRECISION,
    fetched_at DOUBLE PRECISION,
    stale INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (study, kind, target)
);
CREATE INDEX enrich_targets_status ON enrich_targets (study, kind, status);
CREATE TABLE enrich_segments (
    study TEXT NOT NULL,
    path TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    seq INTEGER NOT NULL,
    rows BIGINT NOT NULL,
    PRIMARY KEY (study, path)
);
CREATE INDEX enrich_segments_target ON enrich_segments (study, kind, target);
CREATE TABLE enrich_files (
    study TEXT NOT NULL,
    path TEXT NOT NULL,
    kind TEXT NOT NULL,
    rows BIGINT NOT NULL,
    committed_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (study, path)
);
CREATE TABLE enrich_errors (
    study TEXT NOT NULL,
    kind TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (study, kind)
)
"""

TABLES = """
CREATE TABLE studies (
    study TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    version TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE shards (
    study TEXT NOT NULL,
    key TEXT NOT NULL,
    parent_key TEXT,
    plan_key TEXT NOT NULL,
    start_ts BIGINT NOT NULL,
    end_ts BIGINT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'running', 'done', 'split', 'parked')),
    task_id TEXT,
    search_id TEXT,
    next_cursor BIGINT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    error_kind TEXT,
    records BIGINT NOT NULL DEFAULT 0,
    pages INTEGER NOT NULL DEFAULT 0,
    updated_at DOUBLE PRECISION NOT NULL,
    committed_at DOUBLE PRECISION,
    -- The worker holding the leaf while it runs, and until when (database clock, epoch s):
    -- PostgreSQL's workers lease leaves, SQLite's single runner leaves both empty.
    lease_owner TEXT,
    lease_until DOUBLE PRECISION,
    -- Records the public API returned for the leaf that the study's exact query dropped.
    filtered BIGINT NOT NULL DEFAULT 0,
    -- When the leaf was first started: a window's harvest starts with its first leaf.
    started_at DOUBLE PRECISION,
    PRIMARY KEY (study, key),
    FOREIGN KEY (study, parent_key) REFERENCES shards (study, key),
    CHECK (start_ts < end_ts)
);
CREATE INDEX shards_status ON shards (study, status, start_ts);
CREATE INDEX shards_plan ON shards (study, plan_key);
CREATE TABLE segments (
    study TEXT NOT NULL,
    path TEXT NOT NULL,
    leaf_key TEXT NOT NULL,
    plan_key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    rows BIGINT NOT NULL,
    PRIMARY KEY (study, path),
    FOREIGN KEY (study, leaf_key) REFERENCES shards (study, key),
    UNIQUE (study, leaf_key, seq)
);
CREATE INDEX segments_plan ON segments (study, plan_key);
CREATE TABLE files (
    study TEXT NOT NULL,
    path TEXT NOT NULL,
    plan_key TEXT,
    partition TEXT NOT NULL,
    rows BIGINT NOT NULL,
    committed_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (study, path)
);
CREATE INDEX files_plan ON files (study, plan_key);
CREATE INDEX files_partition ON files (study, partition);
CREATE TABLE compactions (
    study TEXT NOT NULL,
    partition TEXT NOT NULL,
    new_path TEXT NOT NULL,
    rows BIGINT NOT NULL,
    old_paths TEXT NOT NULL,
    PRIMARY KEY (study, partition)
);
CREATE TABLE errors (
    study TEXT NOT NULL,
    kind TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (study, kind)
);
-- The daily ledger: `ledger` names a pool ('pool:our-lab') or one study ('study:x', or '' in a
-- SQLite file), with a suffix for a pool of its own ('/followers').
CREATE TABLE quota (
    ledger TEXT NOT NULL,
    day TEXT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    records BIGINT NOT NULL DEFAULT 0,
    exhausted BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (ledger, day)
);
-- Who used a ledger's day: by study and worker, for shares and `harvester quota`.
CREATE TABLE quota_use (
    ledger TEXT NOT NULL,
    day TEXT NOT NULL,
    study TEXT NOT NULL,
    worker TEXT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    records BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (ledger, day, study, worker)
);
CREATE INDEX quota_use_study ON quota_use (ledger, day, study);
-- What `harvester report` draws over time: one row per commit of a plan shard (a window
-- harvested again later adds a row), errors per kind per UTC hour.
CREATE TABLE window_harvests (
    study TEXT NOT NULL,
    plan_key TEXT NOT NULL,
    started_at DOUBLE PRECISION,
    committed_at DOUBLE PRECISION NOT NULL,
    rows BIGINT NOT NULL,
    PRIMARY KEY (study, plan_key, committed_at),
    FOREIGN KEY (study, plan_key) REFERENCES shards (study, key)
);
CREATE TABLE error_hours (
    study TEXT NOT NULL,
    hour BIGINT NOT NULL,
    kind TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (study, hour, kind)
);
-- Restarts of a leaf from cursor 0, by reason and UTC day: a second restart for the same
-- reason splits the window instead.
CREATE TABLE restarts (
    study TEXT NOT NULL,
    leaf_key TEXT NOT NULL,
    reason TEXT NOT NULL,
    day TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (study, leaf_key, reason, day),
    FOREIGN KEY (study, leaf_key) REFERENCES shards (study, key)
)
"""
TABLES += ";" + _ENRICH

#: A SQLite file also remembers the name of the one study it holds.
_SQLITE_META = "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


def upgrade(tx: Tx, version: int) -> None:
    """Bring a database at schema `version` (0: empty) to `SCHEMA_VERSION`."""
    if version == 0:
        for statement in TABLES.split(";"):
            if statement.strip():
                tx.execute(statement)
        if tx.dialect.name == "sqlite":
            tx.execute(_SQLITE_META)
        return
    steps = MIGRATIONS[tx.dialect.name]
    for step in range(version + 1, SCHEMA_VERSION + 1):
        for statement in steps[step]:
            tx.execute(statement)


_SQLITE: dict[int, tuple[str, ...]] = {
    # Records the public API returned that the study's exact query dropped, per shard.
    2: ("ALTER TABLE shards ADD COLUMN filtered BIGINT NOT NULL DEFAULT 0",),
    # What `harvester report` draws over time: when a leaf was first started (a window's
    # harvest starts with its first leaf); one row per commit of a plan shard (a window
    # harvested again later, by a refresh or a --retry-failed, adds a row: the timeline shows
    # both); errors per kind per UTC hour beside the all-time totals of `errors`.
    3: (
        "ALTER TABLE shards ADD COLUMN started_at DOUBLE PRECISION",
        """CREATE TABLE window_harvests (
            plan_key TEXT NOT NULL REFERENCES shards (key),
            started_at DOUBLE PRECISION,
            committed_at DOUBLE PRECISION NOT NULL,
            rows BIGINT NOT NULL,
            PRIMARY KEY (plan_key, committed_at)
        )""",
        # A state from before knows when each window was committed, not when its harvest
        # began: the report draws those as instants.
        """INSERT INTO window_harvests (plan_key, started_at, committed_at, rows)
            SELECT s.key, NULL, s.committed_at,
                   (SELECT coalesce(sum(l.records), 0) FROM shards l WHERE l.plan_key = s.key)
            FROM shards s WHERE s.parent_key IS NULL AND s.committed_at IS NOT NULL""",
        """CREATE TABLE error_hours (
            hour BIGINT NOT NULL,
            kind TEXT NOT NULL,
            count BIGINT NOT NULL,
            PRIMARY KEY (hour, kind)
        )""",
    ),
    # Restarts of a leaf from cursor 0, by reason and UTC day: a second restart for the same
    # reason splits the window instead (the record outlives the run that restarted it).
    4: (
        """CREATE TABLE restarts (
            leaf_key TEXT NOT NULL REFERENCES shards (key),
            reason TEXT NOT NULL,
            day TEXT NOT NULL,
            count BIGINT NOT NULL,
            PRIMARY KEY (leaf_key, reason, day)
        )""",
    ),
    # The shape PostgreSQL's tables have, so both stores run the same queries: every row
    # gains the (empty) study key, with the unique indexes the queries' ON CONFLICT targets
    # name; the study's fingerprint moves from `meta` to `studies`; leaves gain the (unused)
    # lease columns; the ledger gains its name and the record of who used it, for today's use
    # (one line, as before) seen by `harvester quota`.
    5: (
        """CREATE TABLE studies (
            study TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            version TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL
        )""",
        """INSERT INTO studies (study, fingerprint, version, created_at)
            SELECT '', f.value,
                   coalesce((SELECT value FROM meta WHERE key = 'version'), ''),
                   coalesce((SELECT CAST(value AS REAL) FROM meta WHERE key = 'created_at'), 0)
            FROM meta f WHERE f.key = 'fingerprint'""",
        "DELETE FROM meta WHERE key IN ('fingerprint', 'version', 'created_at')",
        *(
            f"ALTER TABLE {table} ADD COLUMN study TEXT NOT NULL DEFAULT ''"
            for table in (
                "shards",
                "segments",
                "files",
                "compactions",
                "errors",
                "window_harvests",
                "error_hours",
                "restarts",
            )
        ),
        "ALTER TABLE shards ADD COLUMN lease_owner TEXT",
        "ALTER TABLE shards ADD COLUMN lease_until DOUBLE PRECISION",
        "CREATE UNIQUE INDEX errors_study ON errors (study, kind)",
        "CREATE UNIQUE INDEX error_hours_study ON error_hours (study, hour, kind)",
        "CREATE UNIQUE INDEX restarts_study ON restarts (study, leaf_key, reason, day)",
        "ALTER TABLE quota ADD COLUMN ledger TEXT NOT NULL DEFAULT ''",
        "CREATE UNIQUE INDEX quota_ledger ON quota (ledger, day)",
        """CREATE TABLE quota_use (
            ledger TEXT NOT NULL,
            day TEXT NOT NULL,
            study TEXT NOT NULL,
            worker TEXT NOT NULL,
            requests BIGINT NOT NULL DEFAULT 0,
            records BIGINT NOT NULL DEFAULT 0,
            PRIMARY KEY (ledger, day, study, worker)
        )""",
        """INSERT INTO quota_use (ledger, day, study, worker, requests, records)
            SELECT '', day, coalesce((SELECT value FROM meta WHERE key = 'study'), ''), '',
                   requests, records
            FROM quota""",
    ),
}

_POSTGRES: dict[int, tuple[str, ...]] = {
    # Records the public API returned that the study's exact query dropped, per shard.
    2: ("ALTER TABLE shards ADD COLUMN filtered BIGINT NOT NULL DEFAULT 0",),
    # What `harvester report` draws over time (as SQLite's version 3): when a leaf was first
    # started, one row per commit of a plan shard, errors per kind per UTC hour. Windows
    # committed before get a row without a start.
    3: (
        "ALTER TABLE shards ADD COLUMN started_at DOUBLE PRECISION",
        """CREATE TABLE window_harvests (
            study TEXT NOT NULL,
            plan_key TEXT NOT NULL,
            started_at DOUBLE PRECISION,
            committed_at DOUBLE PRECISION NOT NULL,
            rows BIGINT NOT NULL,
            PRIMARY KEY (study, plan_key, committed_at),
            FOREIGN KEY (study, plan_key) REFERENCES shards (study, key)
        )""",
        """INSERT INTO window_harvests (study, plan_key, started_at, committed_at, rows)
            SELECT s.study, s.key, NULL, s.committed_at,
                   (SELECT coalesce(sum(l.records), 0) FROM shards l
                    WHERE l.study = s.study AND l.plan_key = s.key)
            FROM shards s WHERE s.parent_key IS NULL AND s.committed_at IS NOT NULL""",
        """CREATE TABLE error_hours (
            study TEXT NOT NULL REFERENCES studies (study),
            hour BIGINT NOT NULL,
            kind TEXT NOT NULL,
            count BIGINT NOT NULL,
            PRIMARY KEY (study, hour, kind)
        )""",
    ),
    # Restarts of a leaf from cursor 0, by reason and UTC day (as SQLite's version 4).
    4: (
        """CREATE TABLE restarts (
            study TEXT NOT NULL,
            leaf_key TEXT NOT NULL,
            reason TEXT NOT NULL,
            day TEXT NOT NULL,
            count BIGINT NOT NULL,
            PRIMARY KEY (study, leaf_key, reason, day),
            FOREIGN KEY (study, leaf_key) REFERENCES shards (study, key)
        )""",
    ),
    # SQLite's files caught up with this schema; nothing changes here.
    5: (),
}

#: The enrichments' progress moves into the study's state, beside its leaves (schema 6): in
#: PostgreSQL so that a lab's workers share it, in SQLite the same tables (an older harvester's
#: `<state>.enrich.sqlite` is taken in when the enrichment state is first opened).
for _steps in (_SQLITE, _POSTGRES):
    _steps[6] = tuple(s for s in _ENRICH.split(";") if s.strip())

#: By dialect name: the statements that bring version `v - 1` to `v`, by `v`.
MIGRATIONS: dict[str, dict[int, tuple[str, ...]]] = {"sqlite": _SQLITE, "postgres": _POSTGRES}
