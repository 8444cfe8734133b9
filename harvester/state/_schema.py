"""The SQLite schema (standard SQL, so the PostgreSQL store can share it nearly verbatim).

`SCHEMA` is the current version, for a new state file; `MIGRATIONS[v]` brings a file an older
harvester wrote from version `v - 1` to `v`. A change to the schema edits `SCHEMA` and adds the
next migration; a released migration is never edited.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA", "SCHEMA_VERSION"]

SCHEMA_VERSION = 4

SCHEMA = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE shards (
    key TEXT PRIMARY KEY,
    parent_key TEXT REFERENCES shards (key),
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
    filtered BIGINT NOT NULL DEFAULT 0,
    started_at DOUBLE PRECISION,
    CHECK (start_ts < end_ts)
);
CREATE INDEX shards_status ON shards (status);
CREATE INDEX shards_plan ON shards (plan_key);
CREATE INDEX shards_parent ON shards (parent_key);
CREATE TABLE segments (
    path TEXT PRIMARY KEY,
    leaf_key TEXT NOT NULL REFERENCES shards (key),
    plan_key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    rows BIGINT NOT NULL,
    UNIQUE (leaf_key, seq)
);
CREATE INDEX segments_plan ON segments (plan_key);
CREATE TABLE files (
    path TEXT PRIMARY KEY,
    plan_key TEXT,
    partition TEXT NOT NULL,
    rows BIGINT NOT NULL,
    committed_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX files_plan ON files (plan_key);
CREATE INDEX files_partition ON files (partition);
CREATE TABLE compactions (
    partition TEXT PRIMARY KEY,
    new_path TEXT NOT NULL,
    rows BIGINT NOT NULL,
    old_paths TEXT NOT NULL
);
CREATE TABLE quota (
    day TEXT PRIMARY KEY,
    requests BIGINT NOT NULL DEFAULT 0,
    records BIGINT NOT NULL DEFAULT 0,
    exhausted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE errors (
    kind TEXT PRIMARY KEY,
    count BIGINT NOT NULL
);
CREATE TABLE window_harvests (
    plan_key TEXT NOT NULL REFERENCES shards (key),
    started_at DOUBLE PRECISION,
    committed_at DOUBLE PRECISION NOT NULL,
    rows BIGINT NOT NULL,
    PRIMARY KEY (plan_key, committed_at)
);
CREATE TABLE error_hours (
    hour BIGINT NOT NULL,
    kind TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (hour, kind)
);
CREATE TABLE restarts (
    leaf_key TEXT NOT NULL REFERENCES shards (key),
    reason TEXT NOT NULL,
    day TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (leaf_key, reason, day)
);
"""

#: Statements that bring a state of version `v - 1` to version `v`, by `v`: a state file written
#: by an earlier harvester keeps working (and keeps every shard, file and quota day it holds).
MIGRATIONS: dict[int, tuple[str, ...]] = {
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
}
