"""`harvester aggregate`: a SQL query over the dataset whose output is fit to leave the VCE.

In TikTok's execution stage a script runs against all public data, and TikTok's review releases
only aggregated results; individual-level output is rejected. This command writes only what
such a review can release:

- The query is one DuckDB `SELECT` over the view `videos` (the whole dataset, partition columns
  included). It must return the number of videos behind each row in a column named exactly
  `n` (`count(*) AS n`). A fixed name, not a pattern: `view_count`, `like_count` and the other
  statistics also end in `_count`, and taking one of them for the group size would let a single
  video through.
- Every output row needs `n >= K` (`--min-group-size`, default 10). Smaller groups (and rows
  whose `n` is NULL) are suppressed, never written, and counted in the report.
- A column that carries identifiers or free text (video ids, usernames, display names,
  descriptions, voice-to-text, comment text, `_extra`) is refused by name; and, whatever its
  name, a column most of whose values are ids, usernames or descriptions of the dataset's
  videos (`username AS creator` is refused too).

Nothing is written unless all of it holds; the output appears whole or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from harvester._exceptions import ConfigError, QueryError
from harvester._quarantine import quarantine_dir

__all__ = ["COUNT_COLUMN", "IDENTIFYING", "AggregateReport", "aggregate", "run_aggregate"]

#: The column that says how many source videos a row stands for.
COUNT_COLUMN = "n"
DEFAULT_MIN_GROUP_SIZE = 10
#: Column names refused outright, and what they hold.
IDENTIFYING: dict[str, str] = {
    "id": "video ids",
    "video_id": "video ids",
    "item_id": "video ids",
    "username": "usernames",
    "user_name": "usernames",
    "display_name": "display names",
    "nickname": "display names",
    "video_description": "free text (descriptions)",
    "description": "free text (descriptions)",
    "bio_description": "free text (profile descriptions)",
    "voice_to_text": "free text (voice to text)",
    "comment_text": "free text (comments)",
    "text": "free text (comments)",
    "comment_id": "comment ids",
    "video_mention_list": "usernames (mentions)",
    "sticker_text": "free text (stickers)",
    "playlist_id": "playlist ids",
    "_extra": "raw API values",
}
#: Dataset columns whose values must not reappear under another name: column -> what they are.
_VALUES: dict[str, str] = {
    "id": "video ids",
    "username": "usernames",
    "video_description": "descriptions",
    "voice_to_text": "voice-to-text",
}
_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True, slots=True)
class AggregateReport:
    out: Path
    rows: int
    suppressed_groups: int
    suppressed_videos: int
    min_group_size: int
    completeness: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "rows": self.rows,
            "suppressed_groups": self.suppressed_groups,
            "suppressed_videos": self.suppressed_videos,
            "min_group_size": self.min_group_size,
            "completeness": self.completeness,
            "text": (
                f"wrote {self.rows:,} row(s) to {self.out}; suppressed {self.suppressed_groups:,} "
                f"group(s) of fewer than {self.min_group_size:,} videos "
                f"({self.suppressed_videos:,} videos); source: {self.completeness} dataset"
            ),
        }


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _select(sql: str, label: str) -> str:
    """The one SELECT statement of `sql`, without a trailing semicolon."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise QueryError(f"{label}: {_first_line(e)}; fix the SQL") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise QueryError(
            f"{label}: must hold exactly one SELECT statement over the view videos; "
            "write one SELECT ... FROM videos GROUP BY ..."
        )
    return str(statements[0].query).strip().rstrip(";")


def _first_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300]


def _check_out(out: Path, root: Path) -> str:
    fmt = _FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ConfigError(f"--out {out}: unknown format; end the name in .csv or .parquet")
    resolved = out.absolute().resolve()
    for inside in (root, quarantine_dir(root)):
        if resolved.is_relative_to(inside):
            raise ConfigError(
                f"--out {out}: is inside {inside}, which readers scan as the dataset; "
                "write the aggregate elsewhere"
            )
    if not resolved.parent.is_dir():
        raise ConfigError(f"--out {out}: folder {resolved.parent} does not exist; create it first")
    return fmt


def aggregate(
    root: Path,
    sql: str,
    out: Path,
    *,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
    label: str = "query",
    completeness: str = "complete",
) -> AggregateReport:
    """Run `sql` over the dataset at `root` and write its aggregate rows to `out`."""
    if min_group_size < 1:
        raise ConfigError(f"--min-group-size {min_group_size}: use a whole number of at least 1")
    fmt = _check_out(out, root)
    if not root.is_dir() or not any(root.rglob("*.parquet")):
        raise ConfigError(f"{root}: holds no dataset files yet; run the study first")
    query = _select(sql, label)
    con = duckdb.connect()
    try:
        con.execute(
            "CREATE VIEW videos AS SELECT * FROM read_parquet("
            f"{_quote(root / '**' / '*.parquet')}, hive_partitioning = true, "
            "hive_types_autocast = false, union_by_name = true)"
        )
        try:
            con.execute(f"CREATE TEMP TABLE result AS {query}")
        except duckdb.Error as e:
            raise QueryError(f"{label}: {_first_line(e)}; fix the SQL") from None
        columns = [(str(r[0]), str(r[1])) for r in con.execute("DESCRIBE result").fetchall()]
        _refuse_identifying(con, columns, label)
        threshold = f'"{COUNT_COLUMN}" >= {int(min_group_size)}'
        row = con.execute(
            f"SELECT count(*) FILTER (WHERE {threshold}), count(*) FILTER (WHERE NOT ({threshold}) "
            f'OR "{COUNT_COLUMN}" IS NULL), coalesce(sum("{COUNT_COLUMN}") FILTER '
            f"(WHERE NOT ({threshold})), 0) FROM result"
        ).fetchone()
        assert row is not None
        kept, suppressed, suppressed_videos = (int(v) for v in row)
        tmp = out.with_name(f".{out.name}.tmp")
        options = "FORMAT csv, HEADER true" if fmt == "csv" else "FORMAT parquet"
        try:
            con.execute(
                f"COPY (SELECT * FROM result WHERE {threshold}) TO {_quote(tmp)} ({options})"
            )
            tmp.replace(out)
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        con.close()
    return AggregateReport(out, kept, suppressed, suppressed_videos, min_group_size, completeness)


def _refuse_identifying(
    con: duckdb.DuckDBPyConnection, columns: list[tuple[str, str]], label: str
) -> None:
    names = {name.lower(): (name, kind) for name, kind in columns}
    if COUNT_COLUMN not in names:
        raise QueryError(
            f"{label}: the result has no column {COUNT_COLUMN!r}; return the number of videos "
            f"behind each row as count(*) AS {COUNT_COLUMN}"
        )
    count_type = names[COUNT_COLUMN][1]
    if not any(t in count_type for t in ("INT", "DECIMAL")) or "[]" in count_type:
        raise QueryError(
            f"{label}: column {COUNT_COLUMN!r} is {count_type}, not a whole number; "
            f"make it count(*) AS {COUNT_COLUMN}"
        )
    for lower, (name, _kind) in names.items():
        if lower in IDENTIFYING:
            raise QueryError(
                f"{label}: column {name!r} carries {IDENTIFYING[lower]}: individual-level output "
                "is not released; aggregate it away (count, avg, ...) or leave it out"
            )
    present = {
        str(r[0]) for r in con.execute("SELECT column_name FROM (DESCRIBE videos)").fetchall()
    }
    for lower, (name, kind) in names.items():
        if lower == COUNT_COLUMN:
            continue
        for source, what in _VALUES.items():
            if source not in present or not _comparable(kind, source):
                continue
            distinct, seen = con.execute(
                f'SELECT count(DISTINCT r."{name}"), count(DISTINCT r."{name}") FILTER '
                f'(WHERE r."{name}" IN (SELECT v."{source}" FROM videos v)) FROM result r'
            ).fetchone() or (0, 0)
            if seen and 2 * seen >= distinct:
                raise QueryError(
                    f"{label}: column {name!r} holds {what} of the dataset's videos "
                    f"({seen:,} of its {distinct:,} values): individual-level output is not "
                    "released; aggregate it away or leave it out"
                )


def _comparable(kind: str, source: str) -> bool:
    """Whether an output column of DuckDB type `kind` can hold values of dataset `source`."""
    if source == "id":
        return kind in ("BIGINT", "HUGEINT", "UBIGINT", "DECIMAL(20,0)") or kind.startswith(
            "DECIMAL"
        )
    return kind == "VARCHAR"


def run_aggregate(
    study: Any, sql_path: Path, out: Path, *, min_group_size: int = DEFAULT_MIN_GROUP_SIZE
) -> AggregateReport:
    """The CLI's `aggregate` for a loaded study."""
    from harvester.plan.sample import completeness

    try:
        sql = sql_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{sql_path}: cannot read the SQL file ({e}); check the path") from None
    kind = completeness(study, 0)["completeness"]
    if study.output_url is not None:
        raise ConfigError(
            f"{study.config_path.name}: aggregate reads a local dataset, and {study.output_url} "
            f"is in an object store; copy it to a folder first (aws s3 sync {study.output_url} "
            "DIR) and point output.path there"
        )
    return aggregate(
        study.output_path,
        sql,
        out,
        min_group_size=min_group_size,
        label=sql_path.name,
        completeness=kind,
    )
