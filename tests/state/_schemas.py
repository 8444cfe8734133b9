"""States as older harvesters left them: tests make them and check that every migration since
brings them up to date. SQLite's first schema is frozen as harvester 0.1 wrote it; an older
PostgreSQL database is today's with what came after its version taken away."""

from __future__ import annotations

import psycopg

from harvester.state._schema import SCHEMA_VERSION
from harvester.state.postgres import PG_SCHEMA, PostgresState

__all__ = ["SQLITE_V1", "postgres_at_version", "postgres_back_to"]

#: What each PostgreSQL schema version added, taken away again.
_UNDO: dict[int, tuple[str, ...]] = {
    6: ("DROP TABLE enrich_targets, enrich_segments, enrich_files, enrich_errors",),
    5: (),
    4: ("DROP TABLE restarts",),
    3: (
        "DROP TABLE window_harvests, error_hours",
        "ALTER TABLE shards DROP COLUMN started_at",
    ),
    2: ("ALTER TABLE shards DROP COLUMN filtered",),
}


def postgres_at_version(url: str, version: int) -> None:
    """Set up the database at `url` as a harvester of schema `version` left it (empty)."""
    PostgresState(url, study="setup").close()
    postgres_back_to(url, version)


def postgres_back_to(url: str, version: int) -> None:
    """Take away from the database at `url` what came after schema `version`."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"SET search_path TO {PG_SCHEMA}")
        for undone in range(SCHEMA_VERSION, version, -1):
            for statement in _UNDO[undone]:
                db.execute(statement)
        db.execute("UPDATE schema_version SET version = %s", (version,))


SQLITE_V1 = """
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
"""
