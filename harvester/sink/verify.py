"""Check a finished dataset against the state: counts, duplicates, strays, one schema.

Row counts come from Parquet footers and duplicates from DuckDB reading only the `id` column,
so a dataset of millions of rows is verified without loading it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from harvester.sink._files import sink_errors
from harvester.sink.dataset import reader_visible
from harvester.sink.readers import duckdb_files
from harvester.sink.store import DatasetStore, as_store

__all__ = ["VerifyReport", "verify"]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What `harvester verify` prints; `ok` when every list is empty and nothing is duplicated."""

    files: int
    rows: int
    missing: tuple[str, ...] = ()
    strays: tuple[str, ...] = ()
    row_mismatches: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    shard_rows: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    duplicate_ids: int = 0
    duplicate_examples: tuple[int, ...] = ()
    schema_mismatches: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not (
            self.missing
            or self.strays
            or self.row_mismatches
            or self.duplicate_ids
            or self.schema_mismatches
        )


def _shard_of(rel: str) -> str:
    return rel.rpartition("/")[2].removesuffix(".parquet")


def verify(
    root: DatasetStore | Path,
    expected: Mapping[str, int],
    *,
    schema: pa.Schema | None = None,
    key: tuple[str, ...] = ("id",),
    memory_limit: str = "256MB",
) -> VerifyReport:
    """Compare the files under `root` with `expected` (relative path → rows, from the state).

    `schema` is the study's file schema; without it the first file's is the reference.
    Per-shard counts are keyed by file name (the plan shard, or the compacted file). `key`
    names the columns no two rows may share (an enrichment's target and record).
    """
    root = as_store(root)
    with sink_errors(f"verify {root}"):
        present = [rel for rel in root.files() if reader_visible(rel)]
        strays = tuple(p for p in present if p not in expected)
        missing = tuple(sorted(p for p in expected if p not in set(present)))
        found = [p for p in present if p in expected]
        mismatches: dict[str, tuple[int, int]] = {}
        shards: dict[str, tuple[int, int]] = {}
        bad_schema: list[str] = []
        total = 0
        for rel in found:
            with root.open_input(rel) as src:
                meta = pq.read_metadata(src)
            rows = int(meta.num_rows)
            total += rows
            if rows != expected[rel]:
                mismatches[rel] = (expected[rel], rows)
            exp, got = shards.get(_shard_of(rel), (0, 0))
            shards[_shard_of(rel)] = (exp + expected[rel], got + rows)
            file_schema = meta.schema.to_arrow_schema().remove_metadata()
            if schema is None:
                schema = file_schema
            elif not file_schema.equals(schema.remove_metadata()):
                bad_schema.append(rel)
        for rel in missing:
            exp, got = shards.get(_shard_of(rel), (0, 0))
            shards[_shard_of(rel)] = (exp + expected[rel], got)
        dup_count, examples = _duplicates(root, found, key, memory_limit) if found else (0, ())
    return VerifyReport(
        files=len(found),
        rows=total,
        missing=missing,
        strays=strays,
        row_mismatches=mismatches,
        shard_rows=shards,
        duplicate_ids=dup_count,
        duplicate_examples=examples,
        schema_mismatches=tuple(bad_schema),
    )


def _duplicates(
    root: DatasetStore, files: list[str], key: tuple[str, ...], memory_limit: str
) -> tuple[int, tuple[int, ...]]:
    """Keys that occur more than once, counted by DuckDB over the key columns alone (with
    up to ten examples for the `id` key)."""
    import duckdb  # here: 25 MB of a harvest's resident memory for a check a run never makes

    con = duckdb.connect(config={"memory_limit": memory_limit, "threads": 2})
    cols = ", ".join(key)
    examples = (
        "(SELECT list(id) FROM (SELECT id FROM dup ORDER BY id LIMIT 10))"
        if key == ("id",)
        else "NULL"
    )
    query = (
        f"WITH dup AS (SELECT {cols} FROM {{source}} GROUP BY {cols} HAVING count(*) > 1) "
        f"SELECT (SELECT count(*) FROM dup), {examples}"
    )
    try:
        duckdb_files(con, "files", root, files)
        row = con.execute(query.format(source="files")).fetchone()
        if row is None:
            return 0, ()
        return int(row[0]), tuple(int(i) for i in row[1] or ())
    finally:
        con.close()
