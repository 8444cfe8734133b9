"""The PostgreSQL schema: numbered migrations, applied in order by whoever opens the database.

One database holds any number of studies (every table is keyed by study) so that studies of a
lab share one quota ledger. The tables live in their own schema, `harvester`, so the database
can serve other purposes too. `MIGRATIONS[n]` takes the schema from version n to n + 1; a
released migration is never edited, only followed by a new one.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "PG_SCHEMA", "SCHEMA_VERSION"]

PG_SCHEMA = "harvester"

_V1 = """
CREATE TABLE studies (
    study TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    version TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE shards (
    study TEXT NOT NULL REFERENCES studies (study),
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
    -- The worker holding the leaf while it runs, and until when (database clock, epoch s).
    lease_owner TEXT,
    lease_until DOUBLE PRECISION,
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
    study TEXT NOT NULL REFERENCES studies (study),
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
    study TEXT NOT NULL REFERENCES studies (study),
    partition TEXT NOT NULL,
    new_path TEXT NOT NULL,
    rows BIGINT NOT NULL,
    old_paths TEXT NOT NULL,
    PRIMARY KEY (study, partition)
);
CREATE TABLE errors (
    study TEXT NOT NULL REFERENCES studies (study),
    kind TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (study, kind)
);
-- The daily ledger: `ledger` is a pool's name ('pool:our-lab') or one study's ('study:x').
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
"""

#: Records the public API returned that the study's exact query dropped, per shard.
_V2 = """
ALTER TABLE shards ADD COLUMN filtered BIGINT NOT NULL DEFAULT 0
"""

# What `harvester report` draws over time (as SQLite's version 3): when a leaf was first
# started, one row per commit of a plan shard, errors per kind per UTC hour. Windows committed
# before get a row without a start.
_V3 = """
ALTER TABLE shards ADD COLUMN started_at DOUBLE PRECISION;
CREATE TABLE window_harvests (
    study TEXT NOT NULL,
    plan_key TEXT NOT NULL,
    started_at DOUBLE PRECISION,
    committed_at DOUBLE PRECISION NOT NULL,
    rows BIGINT NOT NULL,
    PRIMARY KEY (study, plan_key, committed_at),
    FOREIGN KEY (study, plan_key) REFERENCES shards (study, key)
);
INSERT INTO window_harvests (study, plan_key, started_at, committed_at, rows)
    SELECT s.study, s.key, NULL, s.committed_at,
           (SELECT coalesce(sum(l.records), 0) FROM shards l
            WHERE l.study = s.study AND l.plan_key = s.key)
    FROM shards s WHERE s.parent_key IS NULL AND s.committed_at IS NOT NULL;
CREATE TABLE error_hours (
    study TEXT NOT NULL REFERENCES studies (study),
    hour BIGINT NOT NULL,
    kind TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (study, hour, kind)
);
"""

# Restarts of a leaf from cursor 0, by reason and UTC day (as SQLite's version 4): a second
# restart for the same reason splits the window instead.
_V4 = """
CREATE TABLE restarts (
    study TEXT NOT NULL,
    leaf_key TEXT NOT NULL,
    reason TEXT NOT NULL,
    day TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (study, leaf_key, reason, day),
    FOREIGN KEY (study, leaf_key) REFERENCES shards (study, key)
);
"""

#: MIGRATIONS[n] upgrades version n to n + 1 (0: an empty database).
MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4)
SCHEMA_VERSION = len(MIGRATIONS)
